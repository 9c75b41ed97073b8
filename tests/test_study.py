"""The study runner (``tools/run_experiment.py``): the paired confidence interval, nested labelled sets, both arms
seeing the same data, and the files a study writes, on a tiny configuration."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from tests.helpers import TINY_ENCODER, TINY_MAE, TINY_UNETR
from tools.study import report
from tools.study.stats import mean_sd, paired_difference
from tools.study.study import StudyOptions, labelled_subsets, run_study, save_runs
from tools.study.tasks import TASKS
from tools.study.tune import grid_points, held_out_split


def test_paired_difference_is_students_t_over_the_pairs():
    mae, scratch = [0.30, 0.35, 0.33], [0.25, 0.31, 0.30]
    d = [a - b for a, b in zip(mae, scratch)]
    result = paired_difference(mae, scratch)
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert result.mean == pytest.approx(mean) and result.sd == pytest.approx(sd)
    assert result.ci95 == pytest.approx((mean - half, mean + half))
    assert result.excludes_zero and result.n == 3
    assert not paired_difference([0.3, 0.2], [0.2, 0.3]).excludes_zero
    single = paired_difference([0.3], [0.2])
    assert math.isnan(single.sd) and all(math.isnan(v) for v in single.ci95) and not single.excludes_zero
    with pytest.raises(ValueError, match="paired runs"):
        paired_difference([0.3, 0.2], [0.2])
    assert mean_sd([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))


def test_labelled_sets_are_nested_and_follow_the_seed():
    cases = [{"image": f"img{i}"} for i in range(10)]
    subsets = labelled_subsets(cases, [2, 5, 10], seed=0)
    assert subsets[2] == subsets[5][:2] and subsets[5] == subsets[10][:5]
    assert sorted(c["image"] for c in subsets[10]) == sorted(c["image"] for c in cases)
    assert labelled_subsets(cases, [2], seed=0) == {2: subsets[2]}
    assert any(labelled_subsets(cases, [5], seed=s)[5] != subsets[5] for s in range(1, 5))
    with pytest.raises(ValueError, match="not between 1 and the 10 training cases"):
        labelled_subsets(cases, [0, 11], seed=0)


def test_tuning_holds_out_training_cases_and_spans_the_grid():
    cases = [{"image": f"img{i}"} for i in range(8)]
    training, held = held_out_split(cases, 3, seed=0)
    assert len(held) == 3 and not {c["image"] for c in training} & {c["image"] for c in held}
    assert grid_points({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """A whole btcv study, tiny: 2 training cases of which 1 or 2 are labelled, 2 seeds, a few iterations."""
    out = tmp_path_factory.mktemp("study")
    tiny = {"roi_size": [32, 32, 32], "num_workers": 0}
    options = StudyOptions(
        output_dir=out, seeds=[0, 1], labelled_sizes=[1, 2], steps=2, pretrain_epochs=2,
        synthetic={"num_train": 2, "num_val": 1, "shape": (48, 48, 32)},
        overrides={"pretrain": {**tiny, **TINY_MAE, "network_def#num_layers": 12, "num_samples": 1},
                   "finetune": {**tiny, **TINY_UNETR}, "evaluate": {**tiny, **TINY_UNETR}},
    )
    task = TASKS["btcv"]
    result = run_study(task, options)
    summary = report.summarize(result)
    report.write_summary(summary, out / "summary.json")
    save_runs(result, out / "runs.json")
    report.plot_metric(summary, task.metric_label, out / "metric_vs_labelled.png")
    report.plot_losses(result, out / "loss_curves.png")
    report.write_report(result, summary, out / "report.md")
    return {"result": result, "summary": summary, "out": out}


def test_both_arms_see_the_same_cases_in_the_same_order_with_the_same_seed(study):
    runs = {r.name: r for r in study["result"]["runs"]}
    assert len(runs) == 2 * 2 * 2
    for n in (1, 2):
        for seed in (0, 1):
            mae, scratch = runs[f"n{n}_seed{seed}_mae"], runs[f"n{n}_seed{seed}_scratch"]
            assert mae.fingerprints and mae.fingerprints == scratch.fingerprints  # same crops, same order
    assert runs["n2_seed0_mae"].fingerprints != runs["n2_seed1_mae"].fingerprints  # another seed, other draws
    out = study["out"]
    for seed in (0, 1):  # nested labelled sets, shared by the arms through one datalist per size and seed
        small = json.loads((out / "datalists" / f"n1_seed{seed}.json").read_text())["training"]
        large = json.loads((out / "datalists" / f"n2_seed{seed}.json").read_text())["training"]
        assert small == large[:1]
    logs = {arm: (out / "logs" / f"n1_seed0_{arm}.log").read_text() for arm in ("mae", "scratch")}
    assert "MAE encoder from" in logs["mae"] and "MAE encoder from" not in logs["scratch"]


def test_summary_json_has_the_promised_schema(study):
    summary = json.loads((study["out"] / "summary.json").read_text())
    assert summary["task"] == "btcv" and summary["metric"] == "mean_dice_13"
    assert summary["seeds"] == [0, 1] and summary["labelled_sizes"] == [1, 2]
    assert isinstance(summary["wall_seconds"], float)
    for size in ("1", "2"):
        row = summary["results"][size]
        assert set(row) >= {"mae", "scratch", "difference_mean", "difference_ci95"}
        assert len(row["mae"]) == len(row["scratch"]) == 2 and len(row["difference_ci95"]) == 2
        expected = paired_difference(row["mae"], row["scratch"])
        assert row["difference_mean"] == pytest.approx(expected.mean)
        assert row["difference_ci95"] == pytest.approx(list(expected.ci95))
    assert set(summary["secondary"]) == {"mean_dice_8", "mean_hd95", "misses"}
    assert list(summary["per_class"]["1"]["mae"])[:2] == ["spleen", "right kidney"]
    for name in ("report.md", "metric_vs_labelled.png", "loss_curves.png", "runs.json"):
        assert (study["out"] / name).is_file()
    text = (study["out"] / "report.md").read_text()
    assert "MAE − scratch [95% CI]" in text and "| 1 |" in text


def test_every_task_defines_its_stages_and_metric():
    for name, task in TASKS.items():
        assert task.name == name and task.metric and len(task.labelled_sizes) >= 2
        assert all(Path(c).is_file() for stage in (task.pretrain, task.finetune, task.evaluate) for c in stage.configs)
        assert task.epochs_for(task.labelled_sizes[0], task.finetune_steps) >= 1
    assert {"network_def#hidden_size": TINY_ENCODER["hidden_size"]}.items() <= TINY_UNETR.items()
