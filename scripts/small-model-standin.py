#!/usr/bin/env python3
"""A stand-in for a small local model behind an OpenAI-compatible API, on 127.0.0.1, for
seeing what lore's attribution does with the habits of small models (issue 18). Every
chat completion gets the same canned answer of the chosen habit, streamed in small pieces
or returned whole, whatever the question; the answers are about tests/fixtures.

    scripts/small-model-standin.py HABIT [PORT=8901]
    HABIT: never-cites | cites-wrong | wrong-language | answers-anything

Then, in another shell:

    lore --data-dir /tmp/sm ingest tests/fixtures/prompt_guidelines.md
    LORE_LLM__PROVIDER=openai LORE_LLM__BASE_URL=http://127.0.0.1:8901/v1 \\
    OPENAI_API_KEY=local lore --data-dir /tmp/sm ask "怎样写好提示？"
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS = {
    # Copies and paraphrases the notes without a single [n], then invents a claim.
    "never-cites": "用分隔符隔开指令和输入，模型就不会把待处理的文本误当成指令。"
    "当程序要读取答案时，可以要求模型返回 JSON 或表格。"
    "提示工程是古罗马人在公元前一世纪发明的。",
    # Right claims, wrong numbers: both sentences come from the notes, cited at random.
    "cites-wrong": "用分隔符隔开指令和输入，模型就不会把待处理的文本误当成指令[3]。"
    "当程序要读取答案时，可以要求模型返回 JSON 或表格[1]。",
    # A Chinese question answered in English.
    "wrong-language": "Use delimiters so that the model does not mistake the input for instructions [1]. "
    "Ask for JSON or a table when a program reads the answer [1].",
    # Answers whatever it is asked, as if the notes said so.
    "answers-anything": "上海明天的天气晴朗，最高气温二十三度[1]。",
}


class Handler(BaseHTTPRequestHandler):
    answer = ""

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            text = self.answer
            for i in range(0, len(text), 6):
                chunk = {"id": "standin", "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": text[i:i + 6]},
                                      "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
            done = {"id": "standin", "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        else:
            reply = {"id": "standin", "object": "chat.completion",
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": self.answer}}],
                     "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
            data = json.dumps(reply, ensure_ascii=False).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ANSWERS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(ANSWERS)}}} [PORT]")
    Handler.answer = ANSWERS[sys.argv[1]]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8901
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
