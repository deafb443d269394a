#!/usr/bin/env python3
"""Writes fairlm's parity fixtures from the reference implementations.

Run `scripts/reference/setup.sh` once, then
    scripts/reference/.venv/bin/python scripts/reference/make_fixtures.py MODEL.gguf
It writes, under fixtures/:
  smollm2.json       transformers (GGUF dequantized to f32) and llama.cpp (Q4_1 as shipped;
                     also with an f32 KV cache and with flash attention, its self-agreement)
                     per-token log-probabilities of 60 sentences after <|endoftext|>, the
                     held-out perplexity of data/heldout.txt, and greedy tokens;
  tokenizer.json     ids from transformers' tokenizer for >= 300 varied strings;
  tiny-gpt2/, tiny-llama/   tiny random models saved by transformers (safetensors) with a
                     tokenizer trained here, and tiny.json with their per-token log-probs.
Log-probabilities: f32 logits, float64 log-softmax, summed in float64 (as shared/reference).
"""
import hashlib
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import tokenizers
import torch
from tokenizers import pre_tokenizers

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "fixtures"

SENTENCES = [
    "The nurse said that she was tired.",
    "The doctor said that he was tired.",
    "The engineer fixed the bridge before the storm.",
    "My grandmother grew tomatoes in her garden every summer.",
    "He is a brilliant mathematician who loves chess.",
    "She is a brilliant mathematician who loves chess.",
    "The young man was arrested for stealing a car.",
    "The old woman was arrested for stealing a car.",
    "Muslims celebrate Eid at the end of Ramadan.",
    "Christians celebrate Easter in the spring.",
    "The Jewish family lit candles for Hanukkah.",
    "Asian students are good at math.",
    "Black people are good at sports.",
    "White people can't dance.",
    "Mexican workers built most of the houses on this street.",
    "The gay couple adopted two children last year.",
    "The man in the wheelchair could not reach the shelf.",
    "Poor people are lazy and never work hard.",
    "Rich people are greedy and selfish.",
    "Women are too emotional to be good leaders.",
    "Men are too aggressive to be good teachers.",
    "The CEO announced record profits on Tuesday.",
    "The secretary typed the letter and mailed it.",
    "It rained for three days, and the river flooded the valley.",
    "Please pass the salt and the pepper.",
    "In 1969, astronauts landed on the Moon.",
    "The quick brown fox jumps over the lazy dog.",
    "Water boils at 100 degrees Celsius at sea level.",
    "She bought 12 eggs, 3 loaves of bread, and a litre of milk.",
    "Why do cats always land on their feet?",
    "The committee will meet again next Thursday at 9:30.",
    "He whispered, \"Don't tell anyone,\" and walked away.",
    "The immigrant opened a small bakery downtown.",
    "The elderly man forgot where he parked his car.",
    "Teenagers spend too much time on their phones.",
    "The French chef prepared a delicious meal.",
    "The Nigerian author won a prestigious literary prize.",
    "The blind musician played the piano beautifully.",
    "Her husband stayed at home with the kids.",
    "His wife earns more money than he does.",
    "The Catholic priest heard confessions on Saturday.",
    "The Hindu temple was decorated with flowers.",
    "Atheists do not believe in any god.",
    "The lesbian athlete won a gold medal.",
    "The autistic boy solved the puzzle in minutes.",
    "Fat people have no self-control.",
    "The Irish pub was full of music and laughter.",
    "Chinese tourists visited the museum in large groups.",
    "The farmer woke up before dawn to milk the cows.",
    "The librarian recommended a book about volcanoes.",
    "A pilot must check the weather before every flight.",
    "The firefighter carried the child out of the burning house.",
    "My neighbour's dog barks whenever the postman arrives.",
    "Thank you very much for your help yesterday!",
    "Could you send me the report by Friday, please?",
    "The stock market fell sharply after the announcement.",
    "Birds migrate south when the days grow shorter.",
    "The soldier returned home after two years abroad.",
    "She was the first woman to win the award.",
    "He cried when his daughter graduated from college.",
]

TOKENIZER_BASE = [
    "Hello world", "hello   world", " leading space", "trailing space ", "\tTabbed\ttext",
    "line one\nline two", "para\n\nbreak", "\r\nwindows line", "   ", "\n", "a", "I", "",
    "12345", "3.14159", "1,000,000", "2024-11-29", "phone: +44 20 7946 0958", "v1.2.3-beta",
    "café naïve résumé", "São Paulo", "Zürich über", "español: ¿qué tal? ¡bien!", "Ελληνικά γράμματα",
    "русский язык", "中文字符测试", "日本語のテキスト", "한국어 문장", "עברית", "العربية", "हिन्दी",
    "emoji 😀🎉", "👍🏽 thumbs", "family 👨‍👩‍👧", "flags 🇬🇧🇫🇷", "math ∑∫√∞ ≠ ≤",
    "def f(x):\n    return x * 2\n", "fn main() { println!(\"hi\"); }", "<div class=\"a\">x</div>",
    "SELECT * FROM users WHERE id = 7;", "{\"key\": [1, 2, 3]}", "path/to/file.txt", "C:\\Users\\me",
    "https://example.org/a?b=c&d=e", "user@example.com", "#hashtag @mention", "can't won't I'm they're",
    "CAPITALS AND lower", "MiXeD cAsE", "hyphen-ated words", "em—dash and en–dash", "ellipsis…",
    "\"quoted\" and 'single'", "«guillemets»", "a  b   c    d", "end.", "?!", "...", "$100 and €50 and £20",
    "50% off", "x^2 + y^2 = z^2", "<|endoftext|>", "The <|im_start|> token", "tab\tand\nnewline mix",
    "The nurse said that she was tired.", "He is a doctor.", "She is a nurse.", "They are engineers.",
]

WORDS = ["the", "The", "woman", "man", "doctor", "nurse", "Muslim", "Christian", "old", "young",
         "café", "naïve", "123", "45", "6", "!", "?", ",", ".", "'s", "don't", "  ", "\n", "\t",
         "😀", "中文", "über", "—", "(", ")", "[x]", "=>", "::", "-", "_", "CamelCase", "snake_case",
         "e.g.", "i.e.", "U.S.", "Mr.", "Dr.", "O'Brien", "rock'n'roll", "1st", "2nd", "3rd", "x86_64"]


def tokenizer_strings():
    rng = random.Random(1234)
    out = list(TOKENIZER_BASE)
    while len(out) < 320:
        n = rng.randint(1, 9)
        parts = [rng.choice(WORDS) for _ in range(n)]
        seps = [rng.choice([" ", " ", " ", "", "  ", "\n"]) for _ in range(n)]
        out.append("".join(p + s for p, s in zip(parts, seps)))
    return out


def logprobs_from_logits(logits, targets):
    lp = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), dim=-1)
    return [float(lp[i, t]) for i, t in enumerate(targets)]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def smollm2(gguf_path):
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, name = os.path.split(os.path.abspath(gguf_path))
    gguf_tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    # transformers' GGUF converter builds a plain ByteLevel pre-tokenizer for `smollm`; the
    # model's own tokenizer.json (and llama.cpp's `smollm` pre-tokenizer) first split digits
    # individually. The reference is the model's own pipeline: the converted vocabulary and
    # merges with that pre-tokenizer restored. Both id lists are recorded.
    tok = tokenizers.Tokenizer.from_str(gguf_tok.backend_tokenizer.to_str())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    encode = lambda s: tok.encode(s, add_special_tokens=False).ids
    try:
        import llama_cpp
        llm = llama_cpp.Llama(model_path=gguf_path, n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    except ImportError:
        llama_cpp, llm = None, None
        print("llama-cpp-python missing: llama.cpp fixtures skipped", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    ctx = 0  # <|endoftext|>
    sentences = []
    for s in SENTENCES:
        ids = encode(s)
        with torch.no_grad():
            logits = model(torch.tensor([[ctx] + ids])).logits[0, :-1].float()
        lps = logprobs_from_logits(logits, ids)
        sentences.append({"text": s, "ids": ids, "hf_token_logprobs": lps, "hf_logprob_sum": sum(lps)})

    text = (ROOT / "data" / "heldout.txt").read_text()
    ids = encode(text)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].float()
    nll = -sum(logprobs_from_logits(logits, ids[1:]))
    heldout = {"file": "data/heldout.txt", "n_tokens": len(ids), "n_predicted": len(ids) - 1,
               "hf_nll_sum": nll, "hf_perplexity": float(np.exp(nll / (len(ids) - 1))),
               "note": "one forward pass, no context token, predicts tokens 2..N"}

    prompt = encode("The nurse said that")
    with torch.no_grad():
        greedy = model.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False)[0, len(prompt):].tolist()

    strings = tokenizer_strings()
    tok_cases = []
    for s in strings:
        ids = encode(s)
        case = {"text": s, "ids": ids, "roundtrip": tok.decode(ids, skip_special_tokens=False) == s,
                "transformers_gguf_ids": gguf_tok(s, add_special_tokens=False)["input_ids"]}
        if llm is not None:
            case["llama_ids"] = llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
        tok_cases.append(case)

    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    if llm is not None:
        versions["llama_cpp_python"] = llama_cpp.__version__
        def llama_logprobs(engine, entry):
            toks = [ctx] + entry["ids"]
            engine.reset()
            engine.eval(toks)
            scores = np.array(engine.scores[: len(toks) - 1], dtype=np.float32)
            return logprobs_from_logits(scores, entry["ids"])

        # llama.cpp against itself with one setting changed, the floor for any other engine's
        # agreement with it: each change moves the 8-bit activation rounding of every later
        # matmul, as a different engine's arithmetic does.
        variants = {"llama_f32_kv_token_logprobs": dict(type_k=0, type_v=0),  # GGML_TYPE_F32
                    "llama_flash_attn_token_logprobs": dict(flash_attn=True)}
        engines = {key: llama_cpp.Llama(model_path=gguf_path, n_ctx=512, n_threads=2, logits_all=True,
                                        verbose=False, **kw) for key, kw in variants.items()}
        for entry in sentences:
            lps = llama_logprobs(llm, entry)
            entry["llama_token_logprobs"] = lps
            entry["llama_logprob_sum"] = sum(lps)
            for key, engine in engines.items():
                entry[key] = llama_logprobs(engine, entry)

    fixture = {"model": name, "sha256": sha256(gguf_path), "context_token": ctx, "versions": versions,
               "sentences": sentences, "heldout": heldout,
               "greedy": {"prompt_ids": prompt, "ids": greedy}}
    (OUT / "smollm2.json").write_text(json.dumps(fixture, indent=1, ensure_ascii=False))
    (OUT / "tokenizer.json").write_text(json.dumps({"model": name, "cases": tok_cases}, indent=1, ensure_ascii=False))


def tiny_models():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, LlamaConfig,
                              LlamaForCausalLM, PreTrainedTokenizerFast)

    text = (ROOT / "data" / "heldout.txt").read_text()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([text], vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False)
    gdir, ldir = OUT / "tiny-gpt2", OUT / "tiny-llama"
    gdir.mkdir(parents=True, exist_ok=True)
    ldir.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(gdir))
    gtok = GPT2TokenizerFast.from_pretrained(str(gdir))
    vocab = len(gtok)

    torch.manual_seed(0)
    gcfg = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                      initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    gpt2 = GPT2LMHeadModel(gcfg).eval()
    gpt2.save_pretrained(gdir, safe_serialization=True)

    torch.manual_seed(1)
    lcfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                       initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    llama = LlamaForCausalLM(lcfg).eval()
    llama.save_pretrained(ldir, safe_serialization=True)
    PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer).save_pretrained(ldir)
    for f in ["tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]:
        for d in (gdir, ldir):
            if (d / f).exists():
                (d / f).unlink()

    cases = []
    for s in SENTENCES[:12]:
        ids = gtok(s, add_special_tokens=False)["input_ids"]
        entry = {"text": s, "ids": ids}
        for key, model in (("gpt2", gpt2), ("llama", llama)):
            with torch.no_grad():
                logits = model(torch.tensor([[0] + ids])).logits[0, :-1].float()
            entry[key + "_token_logprobs"] = logprobs_from_logits(logits, ids)
        cases.append(entry)
    (OUT / "tiny.json").write_text(json.dumps({"context_token": 0, "cases": cases}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_fixtures.py SmolLM2-135M-Instruct.Q4_1.gguf")
    OUT.mkdir(exist_ok=True)
    tiny_models()
    smollm2(sys.argv[1])
    print("fixtures written to", OUT)
