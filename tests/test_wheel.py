"""The built wheel ships the browser helper, and an installed (non-editable) copy serves it.

One wheel is built from the checkout and installed into a fresh virtual environment
(``--system-site-packages`` for the frameworks, or the paths of the virtual environment the
tests run in). Every check runs a script with that environment's Python, isolated
(``-I``) from a temporary directory, so the checkout is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import ROOT

SHIPPED = ("indox-stream.js", "indox-stream.global.js", "indox-stream.d.ts")
PACKAGED_STATIC = "indox_integrations/django/static/indox_integrations"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    prefix: Path
    workdir: Path

    def run(self, *args: str, timeout: float = 45.0) -> str:
        """Run the venv's Python, isolated, from a directory outside the checkout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        done = subprocess.run(
            [str(self.python), "-I", *args], cwd=self.workdir, env=env,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, (
            f"{' '.join(args[:3])} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    def script(self, source: str) -> dict[str, str]:
        """Run a script in the venv; it prints one JSON object as its last line."""
        path = self.workdir / "script.py"
        path.write_text(PRELUDE + textwrap.dedent(source), encoding="utf-8")
        result: dict[str, str] = json.loads(self.run(str(path)).strip().splitlines()[-1])
        return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    # Without hatchling installed, build fetches it into an isolated environment.
    isolation = ["--no-isolation"] if importlib.util.find_spec("hatchling") else []
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", *isolation, "--outdir", str(base / "dist")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert built.returncode == 0, f"python -m build failed:\n{built.stdout}\n{built.stderr}"
    wheels = list((base / "dist").glob("indox_integrations-*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}"

    prefix = base / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(prefix)
    if sys.prefix != sys.base_prefix:
        # Run from a virtual environment: the frameworks are that environment's. Its
        # folders go in as plain paths, so its .pth files (the checkout's editable
        # install among them) stay out.
        dirs = {"base": str(prefix), "platbase": str(prefix)}
        site = Path(sysconfig.get_path("purelib", vars=dirs))
        outer = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
        (site / "outer-venv.pth").write_text("".join(f"{path}\n" for path in outer))
    python = prefix / "bin" / "python"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--disable-pip-version-check", "--quiet", str(wheels[0])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert pip.returncode == 0, f"pip install of the wheel failed:\n{pip.stdout}\n{pip.stderr}"
    workdir = base / "work"
    workdir.mkdir()
    return Installed(wheels[0], python, prefix, workdir)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checkout_js() -> str:
    return sha256((ROOT / "static" / "indox-stream.js").read_bytes())


PRELUDE = '''\
from __future__ import annotations

import hashlib
import json
import threading

import httpx

import indox_integrations
from indox_integrations import DemoClient


def report(response: httpx.Response, **extra: object) -> None:
    """The served helper, and where the package was imported from."""
    print(json.dumps({
        "module": indox_integrations.__file__,
        "status": response.status_code,
        "content_type": response.headers.get("content-type", ""),
        "sha256": hashlib.sha256(response.content).hexdigest(),
        **extra,
    }))

'''


def test_wheel_ships_the_browser_helper_and_py_typed(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        assert "indox_integrations/py.typed" in names
        assert "indox_integrations/django/static/indox_integrations/indox-stream.js" in names
        for name in SHIPPED:
            packaged = wheel.read(f"{PACKAGED_STATIC}/{name}")
            assert packaged == (ROOT / "static" / name).read_bytes(), (
                f"{name} in the wheel is stale"
            )


def test_wheel_ships_the_library_only(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        top = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = {name for name in top if name.endswith(".dist-info")}
    assert top - dist_info == {"indox_integrations"}, sorted(top)
    # Installed, nothing but the library lands in site-packages either.
    out = installed.script(
        """
        import sysconfig
        from pathlib import Path

        site = Path(sysconfig.get_paths()["purelib"])
        print(json.dumps({"entries": sorted(p.name for p in site.iterdir())}))
        """
    )
    assert "example_apps" not in out["entries"]
    assert "indox_integrations" in out["entries"]


def test_installed_package_comes_from_the_venv_not_the_checkout(installed: Installed) -> None:
    out = installed.script(
        """
        from indox_integrations import assets

        print(json.dumps({
            "module": indox_integrations.__file__,
            "static_dir": str(assets.STATIC_DIR),
            "js": hashlib.sha256(assets.static_file("indox-stream.js").read_bytes()).hexdigest(),
            "files": [p.name for p in assets.STATIC_DIR.iterdir()],
        }))
        """
    )
    assert Path(out["module"]).is_relative_to(installed.prefix), out["module"]
    assert Path(out["static_dir"]).is_relative_to(installed.prefix), out["static_dir"]
    assert out["js"] == checkout_js()
    assert set(SHIPPED) <= set(out["files"])


def test_installed_fastapi_router_serves_the_packaged_js(installed: Installed) -> None:
    out = installed.script(
        """
        import socket

        import uvicorn
        from fastapi import FastAPI

        from indox_integrations.fastapi import create_router

        app = FastAPI()
        app.include_router(create_router(DemoClient(delay=0)), prefix="/llm")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, daemon=True).start()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(200):
                try:
                    js = client.get("/llm/static/indox-stream.js")
                    break
                except httpx.ConnectError:
                    threading.Event().wait(0.05)
            streamed = client.post("/llm/stream", json={"prompt": "hi ✓", "model": "demo/echo"})
        server.should_exit = True
        report(js, stream=streamed.text)
        """
    )
    assert Path(out["module"]).is_relative_to(installed.prefix), out["module"]
    assert out["status"] == 200
    assert "javascript" in out["content_type"]
    assert out["sha256"] == checkout_js()
    assert "data: hi ✓" in out["stream"] and "data: [DONE]" in out["stream"]


def test_installed_flask_blueprint_serves_the_packaged_js(installed: Installed) -> None:
    out = installed.script(
        """
        from flask import Flask
        from werkzeug.serving import make_server

        from indox_integrations.flask import create_blueprint

        app = Flask(__name__)
        app.register_blueprint(create_blueprint(DemoClient(delay=0)), url_prefix="/llm")
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=10) as client:
            js = client.get("/llm/static/indox-stream.js")
            streamed = client.post("/llm/stream", json={"prompt": "hi ✓", "model": "demo/echo"})
        server.shutdown()
        report(js, stream=streamed.text)
        """
    )
    assert Path(out["module"]).is_relative_to(installed.prefix), out["module"]
    assert out["status"] == 200
    assert "javascript" in out["content_type"]
    assert out["sha256"] == checkout_js()
    assert "data: hi ✓" in out["stream"] and "data: [DONE]" in out["stream"]


def test_installed_django_app_collects_and_finds_the_packaged_js(installed: Installed) -> None:
    site = installed.workdir / "site"
    site.mkdir()
    (site / "wheel_settings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "wheel-test"
            INSTALLED_APPS = ["django.contrib.staticfiles", "indox_integrations.django"]
            STATIC_URL = "/static/"
            STATIC_ROOT = {str(site / "collected")!r}
            TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates"}}]
            USE_TZ = True
            """
        ),
        encoding="utf-8",
    )
    django = ("-m", "django")
    options = ("--settings", "wheel_settings", "--pythonpath", str(site))
    installed.run(*django, "collectstatic", "--noinput", *options)
    found = installed.run(*django, "findstatic", "indox_integrations/indox-stream.js", *options)

    locations = [Path(line.strip()) for line in found.splitlines()[1:] if line.strip()]
    assert locations, f"findstatic found nothing:\n{found}"
    assert all(p.is_relative_to(installed.prefix) for p in locations), found
    for name in SHIPPED:
        collected = site / "collected" / "indox_integrations" / name
        assert collected.read_bytes() == (ROOT / "static" / name).read_bytes(), name

    url = installed.run(
        "-c",
        "import django, os, sys; sys.path.insert(0, sys.argv[1]);"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'wheel_settings'; django.setup();"
        "from django.template import engines;"
        "print(engines['django'].from_string("
        "\"{% load static %}{% static 'indox_integrations/indox-stream.js' %}\").render())",
        str(site),
    )
    assert url.strip() == "/static/indox_integrations/indox-stream.js"
