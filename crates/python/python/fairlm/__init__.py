"""fairlm from Python: audit a language model for social bias, score texts, compare runs.

Every function takes the options of the matching ``fairlm`` command as keyword arguments
(``--max-bias-ratio`` is ``max_bias_ratio``), with the same defaults, and returns the content
of the file the command writes, as plain dicts and lists. Errors are raised as the classes
below, with the message the command prints after ``fairlm: error:``.

    import fairlm
    results = fairlm.audit(model="smollm2", quick=True, seed=0)
    print(results["probe"]["bias_score"])
"""

import json
import os

from . import _fairlm
from ._fairlm import ConfigError, DataError, Error, ModelError

__version__ = _fairlm.__version__
__all__ = [
    "audit",
    "score",
    "compare",
    "mitigate",
    "experiment",
    "bench",
    "Error",
    "DataError",
    "ModelError",
    "ConfigError",
]


def _fspath(value):
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _config(options):
    """The JSON config of a run: options left as None take the library's defaults."""
    return json.dumps({k: _fspath(v) for k, v in options.items() if v is not None})


def audit(model=None, *, quick=False, seed=None, out=None, resume=False, **options):
    """Runs ``fairlm audit``: the counterfactual probe, perplexity and any pair benchmarks.

    ``model`` is ``"smollm2"`` (the default model, also when left out), a GGUF file, a
    Hugging Face directory, a Hugging Face hub id (``"owner/name"`` or
    ``"owner/name@revision"``, read from the local Hugging Face cache; ``allow_download=True``
    fetches one it lacks) or a served model's URL.
    Further options: ``samples``, ``tau``, ``axes`` (a list), ``lexicon``,
    ``templates``, ``bootstrap``, ``text``, ``crows``, ``stereoset``, ``dtype``, ``served``
    (a dict: ``tokenizer``, ``name``, ``concurrency``, ``timeout_s``, ``max_retries``,
    ``cache``). With ``out`` (a directory) the command's files are written there, and
    ``resume=True`` continues an audit stopped there. Returns results.json as a dict.
    Ctrl-C stops the audit after the template it is probing.
    """
    config = _config(dict(options, model=model, quick=quick, seed=seed))
    out = None if out is None else os.fspath(out)
    return json.loads(_fairlm.audit(config, out, resume))


def score(texts, model=None, **options):
    """Log-probability of each text (``fairlm score``): a list of dicts with ``text``,
    ``logprob_sum``, ``logprob_mean`` and ``n_tokens`` (and ``token_ids``,
    ``token_logprobs`` with ``per_token=True``). Options: ``context_token`` (``"auto"``,
    ``"none"`` or an id as a string), ``batch_size``, ``dtype``, ``served``, ``allow_download``.
    ``model`` as for ``audit``."""
    if isinstance(texts, str):
        texts = [texts]
    return json.loads(_fairlm.score(list(texts), _config(dict(options, model=model))))


def _results_json(value, which):
    if isinstance(value, dict):
        return json.dumps(value)
    path = os.fspath(value)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None


def compare(before, after, *, resamples=None, seed=None, **gates):
    """``fairlm compare``: every headline metric before and after with a paired bootstrap 95%
    CI of its change, and the gates given (``max_bias``, ``max_bias_ratio``,
    ``max_ppl_increase``, ``min_lms``, ...). ``before`` and ``after`` are results.json paths
    or the dicts ``audit`` returns; ``resamples`` and ``seed`` default to the command's.
    Returns ``{"rows": [...], "gates": [...], "passed": bool}``."""
    options = {"gates": {k: v for k, v in gates.items() if v is not None}}
    if resamples is not None:
        options["bootstrap"] = resamples
    if seed is not None:
        options["seed"] = seed
    comparison = json.loads(
        _fairlm.compare(
            _results_json(before, "before"),
            _results_json(after, "after"),
            json.dumps(options),
        )
    )
    comparison["passed"] = all(g["passed"] for g in comparison["gates"])
    return comparison


def bench(benchmark, file, model=None, *, out=None, **options):
    """Runs ``fairlm bench BENCHMARK``: ``"crows"``, ``"stereoset"``, ``"pairs"``,
    ``"winoqueer"``, ``"redditbias"``, ``"winobias"``, ``"holistic"``, ``"bold"`` or ``"bbq"`` on
    your ``file`` (a directory for RedditBias, WinoBias, HolisticBias, BOLD and BBQ).
    Options are the command's flags (``strict``, ``batch_size``, ``seed``, ``bootstrap``,
    ``baseline``; HolisticBias's ``descriptors``, ``templates``, ``nouns``, ``full``,
    ``span``; BOLD's ``per_group``, ``samples``, ``max_tokens``, ``tau``, ``lexicon``; BBQ's
    ``per_stratum``; ``dtype``, ``served``). Returns results.json as a dict (also written into
    ``out`` when given)."""
    config = _config(dict(options, file=file, model=model))
    out = None if out is None else os.fspath(out)
    return json.loads(_fairlm.bench(benchmark, config, out))


_MODEL_KEYS = ("dtype", "allow_download")
_GATE_KEYS = (
    "max_bias",
    "max_bias_ratio",
    "max_ppl_increase",
    "min_lms",
    "max_agreement_drop",
    "max_fluency_drop",
    "max_diversity_drop",
)


def _split(options, top_keys):
    """Options of a run with a training recipe: the run's own keys, and the recipe's."""
    top = {k: v for k, v in options.items() if k in top_keys}
    train = {k: v for k, v in options.items() if k not in top_keys}
    return top, train


def mitigate(model=None, *, out, resume=False, **options):
    """Runs ``fairlm mitigate`` into the directory ``out``: the corpus, counterfactual
    augmentation, training, and the mitigated model written as ``out/model`` (and
    ``out/model.gguf`` for a GGUF input). Options are the command's flags (``steps``, ``lr``,
    ``w_consistency``, ``corpus``, ``axes``, ``seed``, ...; ``fairlm config --print mitigate``
    lists them). Returns train.json as a dict. Ctrl-C stops training after the step in
    progress, its checkpoint kept; ``resume=True`` continues it."""
    top, train = _split(options, _MODEL_KEYS)
    config = _config(dict(top, model=model, train=_strip(train)))
    return json.loads(_fairlm.mitigate(config, os.fspath(out), resume))


def experiment(model=None, *, out, quick=False, resume=False, **options):
    """Runs ``fairlm experiment`` into the directory ``out``: audit of the original, mitigation,
    audit of the mitigated model, comparison, quality gates and report.html. Options are the
    command's flags: the gates (``max_bias_ratio``, ``max_fluency_drop``, ...; as with the
    command, giving ``max_bias`` alone drops the default ``max_bias_ratio``), ``crows``,
    ``stereoset``, ``agreement_samples``, ``dtype`` and the training recipe's (``steps``,
    ``axes``, ``seed``, ...). Returns ``{"rows", "gates", "passed", "compare_md",
    "mitigation_md"}``."""
    top, train = _split(
        options,
        _MODEL_KEYS + _GATE_KEYS + ("agreement_samples", "crows", "stereoset"),
    )
    gates = {k: top.pop(k) for k in _GATE_KEYS if k in top}
    if "max_bias" in gates and "max_bias_ratio" not in gates:
        gates["max_bias_ratio"] = None
    run = dict(top, model=model)
    config = json.dumps(
        dict(
            {k: _fspath(v) for k, v in run.items() if v is not None},
            quick=quick,
            gates=gates,
            train=_strip(train),
        )
    )
    return json.loads(_fairlm.experiment(config, os.fspath(out), resume))


def _strip(options):
    return {k: _fspath(v) for k, v in options.items() if v is not None}
