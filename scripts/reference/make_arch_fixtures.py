#!/usr/bin/env python3
"""Writes the parity fixtures of the architectures and GGUF types beyond the default model.

Run `scripts/reference/setup.sh` once, then
    scripts/reference/.venv/bin/python scripts/reference/make_arch_fixtures.py [--default-model Q4_1.gguf --out DIR]
It writes, under fixtures/:
  tiny-qwen2/        a tiny random Qwen2 (q/k/v biases drawn at random, tied embeddings,
                     rope_theta 1e6) saved by transformers, with a Qwen2Tokenizer (Qwen2's
                     split and NFC) over a vocabulary trained here;
  tiny-qwen2.gguf    the same weights as a GGUF of architecture qwen2 (F32), written with
                     llama.cpp's gguf-py as its converter writes qwen2;
  tiny-mistral/      a tiny random Mistral (sliding window 4, head_dim 16 ≠ hidden/heads,
                     untied) with a SentencePiece BPE tokenizer (byte fallback) trained here and
                     converted by transformers;
  tiny-mistral.gguf  the same weights as llama.cpp's converter writes Mistral (architecture
                     llama, SentencePiece vocabulary with scores; no sliding window there);
  tiny-kquant-*.gguf a tiny random Llama 256 wide (k-quant blocks are 256 elements) quantized
                     by llama.cpp's own quantizer (llama_model_quantize) to Q4_K_M, Q5_K_M and
                     Q6_K from an F32 GGUF written as llama.cpp's converter writes llama;
  arch.json          transformers' per-token log-probabilities of the fixture sentences for
                     each tiny model, llama.cpp's for each GGUF (as shipped, with its f16 KV
                     cache, and with an f32 one), and each tokenizer's ids on the tokenizer
                     strings.
With --default-model, it also quantizes the default model (requantizing its Q4_1) to Q4_K_M
and Q6_K into DIR and writes DIR/smollm2-kquants.json with llama.cpp's log-probabilities of
the 60 sentences on each (the files are ~100 MB and are not committed).
Log-probabilities: f32 logits, float64 log-softmax (as make_fixtures.py).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import OUT, ROOT, SENTENCES, logprobs_from_logits, sha256, tokenizer_strings  # noqa: E402

torch.set_num_threads(2)
N_SENTENCES = 12
# llama.cpp's file types (llama_ftype) for llama_model_quantize.
FTYPES = {"Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}


def heldout_text():
    return (ROOT / "data" / "heldout.txt").read_text()


def byte_level_bpe(vocab_size):
    """A byte-level BPE (GPT-2's alphabet) trained on the held-out text: (vocab, merges)."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([heldout_text()], vocab_size=vocab_size,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    model = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def sentencepiece_model(vocab_size, directory):
    """A SentencePiece BPE model with byte fallback (as Llama 2's and Mistral's) trained on the
    held-out text; written as DIR/tokenizer.model, the file those checkpoints ship."""
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    corpus = directory / "corpus.txt"
    corpus.write_text(heldout_text())
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(directory / "tokenizer"),
                                   vocab_size=vocab_size, model_type="bpe", byte_fallback=True,
                                   character_coverage=1.0, split_digits=True, add_dummy_prefix=True,
                                   allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
                                   normalization_rule_name="identity", num_threads=1,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    return directory / "tokenizer.model"


def gguf_spm_tokenizer(w, sp_path):
    """Tokenizer metadata as llama.cpp's converter writes a SentencePiece vocabulary."""
    import gguf
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_path))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(sp.unk_id())
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)


def randomize_biases(model, std=0.2):
    """transformers initialises biases to zero, which would not test that they are added."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def clean(d):
    for f in ["tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja"]:
        if (d / f).exists():
            (d / f).unlink()


def score(model, ids_list, ctx):
    out = []
    for ids in ids_list:
        with torch.no_grad():
            logits = model(torch.tensor([[ctx] + ids])).logits[0, :-1].float()
        out.append(logprobs_from_logits(logits, ids))
    return out


def gguf_tokenizer(w, tok, pre):
    """Tokenizer metadata as llama.cpp's converter writes a byte-level BPE."""
    import gguf

    vocab = tok.get_vocab()
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    specials = set(tok.all_special_tokens)
    types = [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    eot = vocab["<|endoftext|>"]
    w.add_bos_token_id(eot)
    w.add_eos_token_id(eot)


def permute(weights, n_head):
    """llama.cpp's converter's Q/K row order for its interleaved rotary kernel (llama only)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
BLOCK_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    parts = hf.split(".")
    return f"blk.{parts[2]}.{BLOCK_NAMES['.'.join(parts[3:])]}"


def write_gguf(path, arch, model, tok, pre, sp_path=None):
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    if sp_path is not None:
        gguf_spm_tokenizer(w, sp_path)
    else:
        gguf_tokenizer(w, tok, pre)
    for name, p in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        t = p.detach().float().numpy()
        if arch == "llama" and "q_proj" in name:
            t = permute(t, cfg.num_attention_heads)
        elif arch == "llama" and "k_proj" in name:
            t = permute(t, cfg.num_key_value_heads)
        w.add_tensor(gguf_name(name), np.ascontiguousarray(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def without_repacking():
    """llama.cpp's repacked CPU kernels (extra buffer types, on AVX-512/AMX machines) crash on
    the tiny k-quant model (llama-cpp-python 0.3.36, segmentation fault in eval); its
    reference kernels are used throughout, recorded in the fixture's versions."""
    import llama_cpp
    import llama_cpp.llama as high_level

    default = llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    high_level.llama_cpp.llama_model_default_params = params


def llama_cpp_logprobs(path, ids_list, ctx, **kw):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, logits_all=True, verbose=False, **kw)
    out = []
    for ids in ids_list:
        toks = [ctx] + ids
        llm.reset()
        llm.eval(toks)
        scores = np.array(llm.scores[: len(toks) - 1], dtype=np.float32)
        out.append(logprobs_from_logits(scores, ids))
    return out


def quantize(src, dst, ftype):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize({src} → {dst}) failed: {rc}")


def tiny_qwen2(fixture):
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    d = OUT / "tiny-qwen2"
    d.mkdir(parents=True, exist_ok=True)
    vocab, merges = byte_level_bpe(400)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(2)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      rms_norm_eps=1e-6, rope_theta=1_000_000.0, tie_word_embeddings=True,
                      use_sliding_window=False, initializer_range=0.2, bos_token_id=eot, eos_token_id=eot)
    model = Qwen2ForCausalLM(cfg).eval()
    randomize_biases(model)
    model.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    clean(d)
    gguf_path = OUT / "tiny-qwen2.gguf"
    write_gguf(gguf_path, "qwen2", model, tok, "qwen2")
    ids = [tok(s, add_special_tokens=False)["input_ids"] for s in SENTENCES[:N_SENTENCES]]
    fixture["qwen2"] = {
        "context_token": eot, "sentences": SENTENCES[:N_SENTENCES], "ids": ids,
        "hf_token_logprobs": score(model, ids, eot),
        "llama_gguf_f32_kv_token_logprobs": llama_cpp_logprobs(gguf_path, ids, eot, type_k=0, type_v=0),
        "llama_gguf_token_logprobs": llama_cpp_logprobs(gguf_path, ids, eot),
        "gguf_sha256": sha256(gguf_path),
        "tokenizer": [{"text": s, "ids": tok(s, add_special_tokens=False)["input_ids"]} for s in tokenizer_strings()],
    }


def tiny_mistral(fixture, scratch):
    from transformers import LlamaTokenizer, MistralConfig, MistralForCausalLM

    d = OUT / "tiny-mistral"
    d.mkdir(parents=True, exist_ok=True)
    sp_path = sentencepiece_model(700, scratch / "spm")
    tok = LlamaTokenizer.from_pretrained(str(sp_path.parent))
    bos = tok.convert_tokens_to_ids("<s>")
    torch.manual_seed(3)
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                        max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
                        sliding_window=4, tie_word_embeddings=False, initializer_range=0.2,
                        bos_token_id=bos, eos_token_id=tok.convert_tokens_to_ids("</s>"))
    model = MistralForCausalLM(cfg).eval()
    model.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    clean(d)
    for f in ["tokenizer.model"]:
        if (d / f).exists():
            (d / f).unlink()
    ids = [tok(s, add_special_tokens=False)["input_ids"] for s in SENTENCES[:N_SENTENCES]]
    assert max(len(i) for i in ids) + 1 > cfg.sliding_window, "sentences must outgrow the window"
    # Mistral's GGUF files are of architecture llama, computed by llama.cpp without the window:
    # the same weights with the window off are its transformers reference.
    gguf_path = OUT / "tiny-mistral.gguf"
    write_gguf(gguf_path, "llama", model, tok, None, sp_path)
    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=256, n_threads=2, vocab_only=True, verbose=False)
    model.config.sliding_window = None
    fixture["mistral"] = {
        "context_token": bos, "sentences": SENTENCES[:N_SENTENCES], "ids": ids,
        "hf_token_logprobs": score(MistralForCausalLM.from_pretrained(d).eval(), ids, bos),
        "hf_no_window_token_logprobs": score(model, ids, bos),
        "llama_gguf_token_logprobs": llama_cpp_logprobs(gguf_path, ids, bos),
        "llama_gguf_f32_kv_token_logprobs": llama_cpp_logprobs(gguf_path, ids, bos, type_k=0, type_v=0),
        "tokenizer": [{"text": s, "ids": tok(s, add_special_tokens=False)["input_ids"],
                       "llama_ids": llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)}
                      for s in tokenizer_strings()],
    }


def tiny_kquants(fixture, scratch):
    from transformers import GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([heldout_text()], vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer)
    tok.add_special_tokens({"eos_token": "<|endoftext|>"})
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(4)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                      initializer_range=0.05, bos_token_id=eot, eos_token_id=eot)
    model = LlamaForCausalLM(cfg).eval()
    f32 = scratch / "tiny-kquant-F32.gguf"
    write_gguf(f32, "llama", model, tok, "gpt-2")
    ids = [tok(s, add_special_tokens=False)["input_ids"] for s in SENTENCES[:N_SENTENCES]]
    entry = {"context_token": eot, "sentences": SENTENCES[:N_SENTENCES], "ids": ids,
             "hf_token_logprobs": score(model, ids, eot), "files": {}}
    for name, ftype in FTYPES.items():
        path = OUT / f"tiny-kquant-{name}.gguf"
        quantize(f32, path, ftype)
        entry["files"][name] = {
            "file": path.name, "sha256": sha256(path),
            "llama_token_logprobs": llama_cpp_logprobs(path, ids, eot),
            "llama_f32_kv_token_logprobs": llama_cpp_logprobs(path, ids, eot, type_k=0, type_v=0),
        }
    fixture["kquant"] = entry


def default_model_kquants(gguf_path, out_dir):
    """Q4_K_M and Q6_K of the default model, and llama.cpp's log-probs of the 60 sentences."""
    smollm2 = json.loads((OUT / "smollm2.json").read_text())
    ctx = smollm2["context_token"]
    ids = [s["ids"] for s in smollm2["sentences"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"source": Path(gguf_path).name, "source_sha256": sha256(gguf_path), "context_token": ctx,
              "files": {}}
    for name in ["Q4_K_M", "Q6_K"]:
        path = out_dir / f"SmolLM2-135M-Instruct.{name}.gguf"
        quantize(gguf_path, path, FTYPES[name])
        record["files"][name] = {
            "file": path.name, "sha256": sha256(path),
            "llama_token_logprobs": llama_cpp_logprobs(path, ids, ctx),
            "llama_f32_kv_token_logprobs": llama_cpp_logprobs(path, ids, ctx, type_k=0, type_v=0),
            "llama_flash_attn_token_logprobs": llama_cpp_logprobs(path, ids, ctx, flash_attn=True),
        }
    (out_dir / "smollm2-kquants.json").write_text(json.dumps(record, indent=1))
    print("default-model k-quants written to", out_dir)


def main():
    import llama_cpp
    import transformers

    ap = argparse.ArgumentParser()
    ap.add_argument("--default-model")
    ap.add_argument("--out", default="kquants")
    args = ap.parse_args()
    scratch = Path(args.out)
    scratch.mkdir(parents=True, exist_ok=True)
    without_repacking()
    fixture = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                            "llama_cpp_python": llama_cpp.__version__, "llama_cpp_extra_bufts": False}}
    tiny_qwen2(fixture)
    tiny_mistral(fixture, scratch)
    tiny_kquants(fixture, scratch)
    (OUT / "arch.json").write_text(json.dumps(fixture, indent=1, ensure_ascii=False))
    print("fixtures written to", OUT)
    if args.default_model:
        default_model_kquants(args.default_model, scratch)


if __name__ == "__main__":
    main()
