"""The claims of the PEFT chapter's last section, on the book's own model: full fine-tuning,
LoRA and QLoRA compared (accuracy, memory measured after one step), merging, and the sweep
over LoRA's rank and α. The runs come from the cache (they train if absent)."""

import copy

import pytest
import torch

from llmtrain.posttraining import (
    BASE_MODEL_CONFIG,
    BOOK_FINETUNES,
    LORA_CONFIG,
    LORA_SWEEP_ALPHAS,
    LORA_SWEEP_RANKS,
    LORA_SWEEP_RUNS,
    SFT_CONFIG,
    FinetuneConfig,
    LoRALinear,
    NF4Linear,
    PackedExamples,
    base_model,
    cached_finetune,
    cached_finetunes,
    chat_tokenizer,
    complete,
    exact_match_by_task,
    lora_sweep,
    make_examples,
    merge_lora,
    model_state_bytes,
    nf4_constant_bits,
    pretraining_text,
)
from llmtrain.pretraining import cache_dir
from llmtrain.pretraining.cached_models import _key, weights_digest

CONFIGS = {"full": SFT_CONFIG, "lora": LORA_CONFIG, "qlora": LORA_CONFIG}


@pytest.fixture(scope="module")
def test_prompts():
    return make_examples("test", 400, seed=1)


@pytest.fixture(scope="module")
def runs():
    return cached_finetunes({m: {"method": m, "config": c} for m, c in CONFIGS.items()})


@pytest.fixture(scope="module")
def accuracy(runs, test_prompts):
    return {m: exact_match_by_task(r.model, r.tokenizer, test_prompts) for m, r in runs.items()}


@pytest.fixture(scope="module")
def memory(runs):
    return {m: model_state_bytes(r, CONFIGS[m]) for m, r in runs.items()}


@pytest.fixture(scope="module")
def sweep(test_prompts):
    return lora_sweep(test_prompts)


def _overall(by_task, examples):
    return sum(a * sum(e.task == t for e in examples) for t, a in by_task.items()) / len(examples)


def test_adapters_match_full_fine_tuning_except_on_reversal(accuracy):
    full = accuracy["full"]
    assert min(full, key=full.get) == "reverse" and full["reverse"] >= 0.5  # "the hardest one"
    for method in ("lora", "qlora"):
        for task, acc in accuracy[method].items():
            if task != "reverse":
                assert acc >= 0.95, (method, task)
        assert accuracy[method]["reverse"] < accuracy["full"]["reverse"] - 0.05, method


def test_trained_parameters_are_the_adapters(runs):
    n = base_model()[0].num_parameters()
    assert runs["full"].trainable == n
    # Rank 32 on every linear layer of 2 blocks of width 128: r (n_in + n_out) per matrix.
    per_block = 32 * ((128 + 384) + (128 + 128) + (128 + 512) + (512 + 128))
    assert runs["lora"].trainable == runs["qlora"].trainable == 2 * per_block


def test_measured_memory_matches_the_count(runs, memory):
    """float32 AdamW: 4 bytes of weight and gradient and 8 of moments per trained parameter;
    frozen weights 4 bytes (LoRA) or NF4 codes + constants + bfloat16 biases (QLoRA)."""
    n = runs["full"].trainable
    assert memory["full"] == {
        "weights": 4 * n,
        "gradients": 4 * n,
        "optimizer": 8 * n,
        "total": 16 * n,
    }
    k = runs["lora"].trainable
    assert memory["lora"]["weights"] == 4 * (n + k)
    assert memory["lora"]["gradients"] == 4 * k
    assert memory["lora"]["optimizer"] == 8 * k
    layers = [m for m in runs["qlora"].model.modules() if isinstance(m, NF4Linear)]
    n_mat = sum(m.out_features * m.in_features for m in layers)
    n_bias = sum(m.bias.numel() for m in layers if m.bias is not None)
    expected = 4 * (n - n_mat - n_bias + k) + n_mat * (4 + nf4_constant_bits()) / 8 + 2 * n_bias
    assert memory["qlora"]["weights"] == pytest.approx(expected, abs=8 * len(layers) + 8)
    assert memory["qlora"]["gradients"] == memory["lora"]["gradients"]
    assert memory["qlora"]["optimizer"] == memory["lora"]["optimizer"]
    # The claims of the prose: LoRA saves on gradients and optimizer state but not on
    # weights; QLoRA's weights are the smallest of the three.
    assert memory["lora"]["weights"] > memory["full"]["weights"]
    assert memory["lora"]["total"] < memory["full"]["total"]
    assert memory["qlora"]["weights"] < memory["full"]["weights"]
    assert memory["qlora"]["total"] < memory["lora"]["total"]


def test_merged_model_computes_what_the_adapted_one_does(runs, test_prompts):
    run = runs["lora"]
    merged = merge_lora(copy.deepcopy(run.model))
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert merged.num_parameters() == base_model()[0].num_parameters()
    rows = PackedExamples(run.tokenizer, test_prompts, 64).batch(
        16, torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        gap = (merged(*rows)[0] - run.model(*rows)[0]).abs().max().item()
    assert gap < 1e-4
    prompts = [e.prompt for e in test_prompts]
    assert complete(merged, run.tokenizer, prompts) == complete(run.model, run.tokenizer, prompts)


def test_the_short_sweep(sweep, test_prompts):
    assert set(sweep) == {(r, a) for r in LORA_SWEEP_RANKS for a in LORA_SWEEP_ALPHAS}
    for point in sweep.values():
        # No setting learns reversal or the capitals in 200 updates.
        assert point["accuracy"]["reverse"] < 0.1 and point["accuracy"]["capitals"] <= 0.2
        assert point["overall"] == pytest.approx(_overall(point["accuracy"], test_prompts))
    overall = {key: point["overall"] for key, point in sweep.items()}
    assert overall[2, 32.0] < overall[8, 32.0] < overall[32, 32.0]  # at α = 32, rank helps
    for r in LORA_SWEEP_RANKS:
        assert overall[r, 32.0] > overall[r, 8.0]  # a larger scale helps at every rank
    # At α = 8 a larger rank does worse: its scale α/r, and so its steps, shrink faster than
    # the extra directions help in a run this short.
    assert overall[2, 8.0] > overall[8, 8.0] > overall[32, 8.0]
    trainable = [sweep[r, LORA_SWEEP_ALPHAS[0]]["trainable"] for r in LORA_SWEEP_RANKS]
    assert trainable == [r * trainable[0] // LORA_SWEEP_RANKS[0] for r in LORA_SWEEP_RANKS]


def test_model_state_bytes_checks_its_config(runs):
    with pytest.raises(TypeError, match="config must be a FinetuneConfig"):
        model_state_bytes(runs["lora"], {"lr": 1e-3})


# Short runs of each method, to compare runs trained side by side with runs trained alone.
SHORT = FinetuneConfig(max_iters=30, batch_size=4, warmup_iters=5, eval_interval=15)
SHORT_RUNS = {
    "full": {"method": "full", "config": SHORT},
    "lora": {"method": "lora", "config": SHORT, "r": 4, "alpha": 8.0},
    "qlora": {"method": "qlora", "config": SHORT, "r": 4, "alpha": 8.0},
    "lora again": {"method": "lora", "config": SHORT, "alpha": 8.0, "r": 4},
}


def _cache_with_the_base_model(path):
    """A new cache directory that holds (a link to) the trained base model only."""
    base_model()  # trained into the shared cache if it is not there yet
    name = _key(pretraining_text(), BASE_MODEL_CONFIG, chat_tokenizer())
    path.mkdir()
    (path / name).symlink_to(cache_dir() / name)
    return path


def test_runs_trained_side_by_side_equal_runs_trained_alone(tmp_path, monkeypatch):
    side_by_side = _cache_with_the_base_model(tmp_path / "side-by-side")
    alone = _cache_with_the_base_model(tmp_path / "alone")
    monkeypatch.setenv("LLMTRAIN_CACHE", str(side_by_side))

    def no_training_here(*args, **kwargs):
        raise AssertionError("this process trained a run: the workers were to train them all")

    # The worker processes import the package afresh, so only this process loses finetune.
    monkeypatch.setattr("llmtrain.posttraining.models.finetune", no_training_here)
    parallel = cached_finetunes(SHORT_RUNS, workers=2)
    monkeypatch.undo()
    assert list(parallel) == list(SHORT_RUNS)
    assert len(list(side_by_side.glob("finetune-*"))) == 3  # "lora again" is the same run
    monkeypatch.setenv("LLMTRAIN_CACHE", str(alone))
    for name, kwargs in SHORT_RUNS.items():
        run = cached_finetune(**kwargs)
        assert weights_digest(run.model) == weights_digest(parallel[name].model), name
        assert run.losses == parallel[name].losses, name
        val = [[r["val_loss"] for r in x.log] for x in (run, parallel[name])]
        assert val[0] == val[1], name
        assert run.trainable == parallel[name].trainable


def test_cached_finetunes_checks_every_run_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMTRAIN_CACHE", str(tmp_path))  # nothing may be trained here
    good = SHORT_RUNS["lora"]
    with pytest.raises(ValueError, match=r"workers must be an integer in \[1, "):
        cached_finetunes({"a": good}, workers=0)
    with pytest.raises(ValueError, match="method must be 'full', 'lora' or 'qlora'"):
        cached_finetunes({"a": good, "b": {"method": "dora"}})
    with pytest.raises(ValueError, match="r must be an integer"):
        cached_finetunes({"a": good, "b": {**good, "r": 0}})
    with pytest.raises(TypeError, match="rank"):
        cached_finetunes({"a": good, "b": {"method": "lora", "rank": 4}})
    assert not any(tmp_path.iterdir())


def test_the_first_book_run_asked_for_trains_all_the_book_runs(tmp_path, monkeypatch):
    import llmtrain.posttraining.models as models

    monkeypatch.setenv("LLMTRAIN_CACHE", str(tmp_path))  # none of the runs is cached here
    batches, trained = [], []
    monkeypatch.setattr(models, "cached_finetunes", lambda runs: batches.append(runs))
    monkeypatch.setattr(models, "_finetune", lambda *args: trained.append(args[:5]))
    monkeypatch.setattr(models, "usable_cores", lambda: 2)
    cached_finetune("lora")
    assert batches == [BOOK_FINETUNES] and trained == [("lora", LORA_CONFIG, 32, 64.0, False)]
    cached_finetune("lora", config=SHORT)  # not a run of the book: trained alone
    assert len(batches) == 1 and len(trained) == 2
    monkeypatch.setattr(models, "usable_cores", lambda: 1)
    cached_finetune("full")  # one core: nothing to gain from training the others now
    assert len(batches) == 1 and trained[-1][:2] == ("full", SFT_CONFIG)
    assert {"full", "lora", "qlora"} <= set(BOOK_FINETUNES)
    assert all(run in BOOK_FINETUNES.values() for run in LORA_SWEEP_RUNS.values())


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [("max 100000", None, 8), ("100000 100000", None, 1), ("150000 100000", None, 2),
     ("-1", "100000", 8), ("50000", "100000", 1), ("2000000", "100000", 8)],
)  # fmt: skip
def test_usable_cores_respects_a_cpu_quota(tmp_path, monkeypatch, quota, period, expected):
    import llmtrain._cores as cores

    quota_file = tmp_path / "quota"
    quota_file.write_text(quota + "\n")
    period_file = None
    if period is not None:
        period_file = tmp_path / "period"
        period_file.write_text(period + "\n")
    missing = (str(tmp_path / "absent"), None)
    monkeypatch.setattr(cores, "_QUOTA_FILES", (missing, (str(quota_file), period_file)))
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert cores.usable_cores() == expected


def test_usable_cores_without_cpu_affinity(monkeypatch):
    import llmtrain._cores as cores

    monkeypatch.setattr(cores, "_QUOTA_FILES", ())
    monkeypatch.delattr(cores.os, "sched_getaffinity", raising=False)  # as on macOS
    monkeypatch.setattr(cores.os, "cpu_count", lambda: 4)
    assert cores.usable_cores() == 4
    monkeypatch.setattr(cores.os, "cpu_count", lambda: None)
    assert cores.usable_cores() == 1
