// The event-stream parser (src/sse.ts) as the WHATWG HTML standard reads the format
// (section 9.2.6): however the network splits the text, whichever line ends it uses.

import assert from "node:assert/strict";
import { test } from "node:test";

import { EventStreamParser, LineSplitter } from "../dist/index.js";

function parse(chunks, lastEventId = "") {
  const parser = new EventStreamParser(undefined, lastEventId);
  const events = chunks.flatMap((chunk) => parser.push(chunk));
  return { events, lastEventId: parser.lastEventId, retry: parser.retry };
}

const STREAM =
  ": keep-alive\n" +
  "retry: 1500\n" +
  "id: v.1\nevent: snapshot\ndata: {\"a\":1}\n\n" +
  "event: change\ndata: first\ndata:second\ndata:  third\n\n" +
  "id: v.3\n\n" +
  "data\n\n" +
  "id: v.4\nevent: change\ndata: {\"é\":\"ü\"}\n\n";

const EXPECTED = [
  { type: "snapshot", data: '{"a":1}', id: "v.1" },
  { type: "change", data: "first\nsecond\n third", id: "v.1" },
  { type: "message", data: "", id: "v.3" },
  { type: "change", data: '{"é":"ü"}', id: "v.4" },
];

test("a stream split at every position gives the same events as the whole", () => {
  const whole = parse([STREAM]);
  assert.deepEqual(whole.events, EXPECTED);
  assert.equal(whole.lastEventId, "v.4");
  assert.equal(whole.retry, 1500);
  for (let at = 0; at <= STREAM.length; at++) {
    assert.deepEqual(parse([STREAM.slice(0, at), STREAM.slice(at)]), whole, `split at ${at}`);
  }
  assert.deepEqual(parse([...STREAM]), whole, "one character per chunk");
});

test("CR, LF and CRLF all end lines, mixed in one stream, split anywhere", () => {
  for (const end of ["\r", "\n", "\r\n"]) {
    const text = STREAM.replaceAll("\n", end);
    assert.deepEqual(parse([text]).events, EXPECTED, JSON.stringify(end));
    for (let at = 0; at <= text.length; at++) {
      assert.deepEqual(parse([text.slice(0, at), text.slice(at)]).events, EXPECTED, `${JSON.stringify(end)} at ${at}`);
    }
  }
  const mixed = "data: a\rdata: b\r\ndata: c\n\r\n";
  assert.deepEqual(parse([mixed]).events, [{ type: "message", data: "a\nb\nc", id: "" }]);
});

test("a CR at the end of a chunk dispatches at once; its LF in the next chunk is no blank line", () => {
  const parser = new EventStreamParser();
  assert.deepEqual(parser.push("data: x\r\r"), [{ type: "message", data: "x", id: "" }]);
  assert.deepEqual(parser.push("\ndata: y\r\n"), []);
  assert.deepEqual(parser.push("\r\n"), [{ type: "message", data: "y", id: "" }]);
});

test("comments are skipped, whatever they hold", () => {
  const { events } = parse([":\n: data: no\n:id: 9\ndata: yes\n: between\n\n"]);
  assert.deepEqual(events, [{ type: "message", data: "yes", id: "" }]);
});

test("retry: only ASCII digits set the reconnection time; anything else is ignored", () => {
  assert.equal(parse(["retry: 250\n\n"]).retry, 250);
  assert.equal(parse(["retry:0\n"]).retry, 0);
  for (const bad of ["retry: 1.5\n", "retry: -1\n", "retry: 10ms\n", "retry:\n", "retry: ٣\n", "retry:  5\n"]) {
    assert.equal(parse([bad]).retry, null, bad);
  }
  assert.equal(parse(["retry: 100\nretry: x\n"]).retry, 100, "a bad value keeps the last good one");
});

test("id: persists to later events, an empty id clears it, one with U+0000 is ignored", () => {
  const { events, lastEventId } = parse([
    "id: 7\ndata: a\n\n",
    "data: b\n\n",
    "id\ndata: c\n\n",
    "id: 8\ndata: d\n\n",
    "id: 9\0x\ndata: e\n\n",
    "id:\n\n",
  ]);
  assert.deepEqual(events.map((event) => [event.data, event.id]), [["a", "7"], ["b", "7"], ["c", ""], ["d", "8"], ["e", "8"]]);
  assert.equal(lastEventId, "");
});

test("an event without data dispatches nothing but still sets the last event ID", () => {
  const { events, lastEventId } = parse(["id: 41\nevent: change\n\n", "id: 42\n\n"]);
  assert.deepEqual(events, []);
  assert.equal(lastEventId, "42");
});

test("the ID given to the constructor is the one events carry until the stream sets another", () => {
  const { events, lastEventId } = parse(["data: x\n\n"], "s.17");
  assert.deepEqual(events, [{ type: "message", data: "x", id: "s.17" }]);
  assert.equal(lastEventId, "s.17");
});

test("the event type applies to one event only; unknown fields are ignored", () => {
  const { events } = parse(["event: change\nfoo: bar\ndata: 1\n\ndata: 2\n\n"]);
  assert.deepEqual(events.map((event) => event.type), ["change", "message"]);
});

test("an event the stream never ends with a blank line is not dispatched", () => {
  assert.deepEqual(parse(["data: complete\n\ndata: cut off\n"]).events, [{ type: "message", data: "complete", id: "" }]);
});

test("a byte order mark is skipped at the start of the stream only", () => {
  assert.deepEqual(parse(["\uFEFFdata: a\n\n"]).events, [{ type: "message", data: "a", id: "" }]);
  assert.deepEqual(parse(["\uFEFF", "data: a\n\n"]).events, [{ type: "message", data: "a", id: "" }]);
  assert.deepEqual(parse(["data: a\n\n\uFEFFdata: b\n\n"]).events.map((event) => event.data), ["a"]);
});

test("the callback hears each event as push returns it", () => {
  const heard = [];
  const parser = new EventStreamParser((event) => heard.push(event));
  const returned = parser.push("data: 1\n\ndata: 2\n\n");
  assert.deepEqual(heard, returned);
  assert.equal(heard.length, 2);
});

test("lines split at CR, LF and CRLF only, never at U+2028, U+2029 or U+0085", () => {
  const lines = new LineSplitter();
  assert.deepEqual(lines.push('{"a":"x\u2028y\u0085z\u2029"}\r'), ['{"a":"x\u2028y\u0085z\u2029"}']);
  assert.deepEqual(lines.push("\nb\r\nc"), ["b"]);
  assert.equal(lines.rest(), "c");
  assert.equal(lines.rest(), "");
});
