// SSE streams and what a WHATWG parser must make of them.
// `input` is a string (sent as UTF-8) or a Uint8Array; `retries` are the onRetry calls.

import { message } from './helpers.mjs';

const BOM = '\uFEFF';

export const corpus = [
  {
    name: 'LF line ends',
    input: 'data: hello\n\ndata: world\n\n',
    events: [message('hello'), message('world')],
  },
  {
    name: 'CR line ends',
    input: 'data: a\r\rdata: b\r\r',
    events: [message('a'), message('b')],
  },
  {
    name: 'CRLF line ends',
    input: 'data: a\r\n\r\ndata: b\r\ndata: c\r\n\r\n',
    events: [message('a'), message('b\nc')],
  },
  {
    name: 'mixed line ends in one event',
    input: 'data: a\r\ndata: b\rdata: c\ndata: d\n\r\n',
    events: [message('a\nb\nc\nd')],
  },
  {
    name: 'CR then LF is one line end, CR CR is two',
    input: 'data: a\r\ndata: b\r\r\ndata: c\r\n\r\n',
    events: [message('a\nb'), message('c')],
  },
  {
    name: 'UTF-8 BOM at the start is stripped',
    input: new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('data: bom\n\n')]),
    events: [message('bom')],
  },
  {
    name: 'only the first BOM is stripped',
    // The second BOM makes the field name "\uFEFFdata", an unknown field.
    input: `${BOM}${BOM}data: lost\n\ndata: kept\n\n`,
    events: [message('kept')],
  },
  {
    name: 'a BOM inside data is text',
    input: `data: a${BOM}b\n\n`,
    events: [message(`a${BOM}b`)],
  },
  {
    name: 'multi-line data joined with LF',
    input: 'data: one\ndata: two\ndata:\ndata: three\n\n',
    events: [message('one\ntwo\n\nthree')],
  },
  {
    name: 'only one leading space is stripped',
    input: 'data:  two spaces\n\ndata:no space\n\ndata:\tTab\n\nevent:  spaced\ndata: x\n\n',
    events: [message(' two spaces'), message('no space'), message('\tTab'), message('x', { event: ' spaced' })],
  },
  {
    name: 'trailing spaces are kept',
    input: 'data: a  \n\n',
    events: [message('a  ')],
  },
  {
    name: 'comments',
    input: ': stream open\n:\n:no space\ndata: x\n: ping\ndata: y\n\n',
    events: [message('x\ny')],
    comments: ['stream open', '', 'no space', 'ping'],
  },
  {
    name: 'field without colon has an empty value',
    input: 'data\n\ndata\ndata\n\nevent\ndata: z\n\n',
    events: [message(''), message('\n'), message('z')],
  },
  {
    name: 'empty data field dispatches an empty message',
    input: 'data:\n\n',
    events: [message('')],
  },
  {
    name: 'blank lines without data dispatch nothing',
    input: '\n\n\r\n\r\revent: lonely\n\ndata: b\n\n',
    events: [message('b')],
  },
  {
    name: 'event type applies to one event only',
    input: 'event: usage\ndata: {"total_tokens": 3}\n\ndata: after\n\nevent: \ndata: empty type\n\n',
    events: [message('{"total_tokens": 3}', { event: 'usage' }), message('after'), message('empty type')],
  },
  {
    name: 'last event id persists, NUL ids are ignored, empty id resets',
    input:
      'id: 1\ndata: a\n\n' +
      'data: b\n\n' +
      'id: 2\0x\ndata: c\n\n' +
      'id: 3\n\n' +
      'data: d\n\n' +
      'id\ndata: e\n\n',
    events: [
      message('a', { id: '1' }),
      message('b', { id: '1' }),
      message('c', { id: '1' }),
      message('d', { id: '3' }),
      message('e', { id: '' }),
    ],
  },
  {
    name: 'retry only when ASCII digits',
    input:
      'retry: 3000\ndata: a\n\n' +
      'retry: 12ab\ndata: b\n\n' +
      'retry: -5\ndata: c\n\n' +
      'retry:  100\ndata: d\n\n' +
      'retry\ndata: e\n\n' +
      'retry: \u0661\u0662\ndata: f\n\n' +
      'retry: 0\ndata: g\n\n',
    events: [
      message('a', { retry: 3000 }),
      message('b'),
      message('c'),
      message('d'),
      message('e'),
      message('f'),
      message('g', { retry: 0 }),
    ],
    retries: [3000, 0],
  },
  {
    name: 'unknown and wrongly cased fields are ignored',
    input: 'foo: bar\nDATA: upper\nData: title\n data: space\ndata: y\n\n',
    events: [message('y')],
  },
  {
    name: 'an event without its closing blank line is not dispatched',
    input: 'data: a\n\ndata: b\n',
    events: [message('a')],
  },
  {
    name: 'an unterminated last line is not dispatched',
    input: 'data: a\n\ndata: b',
    events: [message('a')],
  },
  {
    name: 'emoji and multi-byte characters',
    input: 'data: héllo 🌍 日本語 👩‍👩‍👧 ∑\n\ndata: 🎉\n\n',
    events: [message('héllo 🌍 日本語 👩‍👩‍👧 ∑'), message('🎉')],
  },
  {
    name: '[DONE] as text is a message, event: done ends',
    input: 'data: [DONE]\n\nevent: done\ndata: [DONE]\n\n',
    events: [message('[DONE]'), message('[DONE]', { event: 'done' })],
  },
  {
    name: 'field syntax inside data is text',
    input: 'data: data: x\n\ndata:data: \n\ndata: event: usage\n\ndata: a:b: c\n\n',
    events: [message('data: x'), message('data: '), message('event: usage'), message('a:b: c')],
  },
  {
    name: 'NUL inside data is kept',
    input: 'data: a\0b\n\n',
    events: [message('a\0b')],
  },
  {
    name: 'the wire format of indox_integrations',
    input:
      ': stream open\n\n' +
      'data: Once upon a time\n\n' +
      'data: , a robot\n\n' +
      'data: line one\ndata: line two\n\n' +
      ': ping\n\n' +
      'event: usage\ndata: {"prompt_tokens": 12, "completion_tokens": 80, "total_tokens": 92}\n\n' +
      'event: error\ndata: {"type": "upstream_error", "message": "boom"}\n\n' +
      'event: done\ndata: [DONE]\n\n',
    events: [
      message('Once upon a time'),
      message(', a robot'),
      message('line one\nline two'),
      message('{"prompt_tokens": 12, "completion_tokens": 80, "total_tokens": 92}', { event: 'usage' }),
      message('{"type": "upstream_error", "message": "boom"}', { event: 'error' }),
      message('[DONE]', { event: 'done' }),
    ],
    comments: ['stream open', 'ping'],
  },
];

const big = 'x'.repeat(1 << 20) + '🌍';

/** Too large to feed byte by byte; split into large random pieces instead. */
export const bigCase = {
  name: '1 MB data line',
  input: `data: ${big}\n\n`,
  events: [message(big)],
};
