"""The study runner (``tools/run_experiment.py``): the paired confidence interval, nested labelled sets, both arms
seeing the same data, and the files a study writes, on a tiny configuration."""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from scipy import stats

from shared.utils.errors import InputError
from tests.helpers import TINY_ENCODER, TINY_MAE, TINY_UNETR, TINY_VIT
from tools.bundle_runner import bundle_importable
from tools.study import report
from tools.study.arms import ARM_NAMES
from tools.study.plan import PLANS, RESOLVED_KEYS, check_plan, load_plan, options_from_plan
from tools.study.stats import holm, mean_sd, minimum_detectable_effect, paired_difference, paired_t_power
from tools.study.study import (
    OUTPUT_MARKER,
    Run,
    StudyOptions,
    StudyResult,
    arm_overrides,
    check_same_data,
    data_digest,
    labelled_subsets,
    load_runs,
    replace_output_folder,
    run_study,
    save_runs,
)
from tools.study.tasks import TASKS
from tools.study.tune import grid_points, held_out_split, load_tuning, tune
from tools.zoo.package_bundles import json_format_errors


def test_paired_difference_is_students_t_over_the_pairs():
    mae, scratch = [0.30, 0.35, 0.33], [0.25, 0.31, 0.30]
    d = [a - b for a, b in zip(mae, scratch)]
    result = paired_difference(mae, scratch)
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert result.mean == pytest.approx(mean) and result.sd == pytest.approx(sd)
    assert result.ci95 == pytest.approx((mean - half, mean + half))
    assert result.n == 3
    single = paired_difference([0.3], [0.2])
    assert math.isnan(single.sd) and all(math.isnan(v) for v in single.ci95)
    with pytest.raises(ValueError, match="paired runs"):
        paired_difference([0.3, 0.2], [0.2])
    assert mean_sd([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))


def test_paired_difference_gives_the_figures_of_before():
    """``scipy.stats.ttest_rel`` gives what the one-sample t-test of the differences gave (recorded before)."""
    result = paired_difference([0.30, 0.35, 0.33, 0.41], [0.25, 0.31, 0.30, 0.32])
    assert result.mean == pytest.approx(0.0525, rel=1e-12) and result.sd == pytest.approx(0.026299556396765813)
    assert result.ci95 == pytest.approx((0.010651536957256062, 0.09434846304274391), rel=1e-12)
    assert result.p_value == pytest.approx(0.028147028070252073, rel=1e-12)
    negative = paired_difference([0.5, 0.6, 0.55], [0.52, 0.58, 0.56])
    assert negative.ci95 == pytest.approx((-0.055044783458756005, 0.04837811679208934), rel=1e-12)
    assert negative.p_value == pytest.approx(0.8075499102701248, rel=1e-12)
    constant = paired_difference([0.5, 0.6], [0.4, 0.5])  # no spread: the interval is the mean itself
    assert constant.ci95 == (constant.mean, constant.mean) and constant.p_value == 0.0


def test_differences_constant_up_to_rounding_have_no_spread(recwarn):
    """Differences equal but for rounding are constant: no spurious p of 1e-48 with scipy's precision warning, a
    zero-width interval and no detectable difference (n/a, not 0); a real spread is untouched."""
    for first, second in (([0.3, 0.6, 0.7], [0.2, 0.5, 0.6]), ([0.31, 0.62, 0.73, 0.11], [0.21, 0.52, 0.63, 0.01]),
                          ([0.5, 0.5], [0.4, 0.4])):
        d = paired_difference(first, second)
        assert (d.sd, d.ci95, d.p_value) == (0.0, (d.mean, d.mean), 0.0), first
        assert math.isnan(minimum_detectable_effect(d.sd, d.n))
    same = paired_difference([0.1 + 0.2, 0.5], [0.3, 0.5])  # identical arms up to rounding
    assert (same.sd, same.p_value) == (0.0, 1.0)
    assert not [w for w in recwarn if "Precision loss" in str(w.message)]
    spread = paired_difference([0.30, 0.35, 0.33, 0.41], [0.25, 0.31, 0.30, 0.32])  # as before
    assert spread.sd == pytest.approx(0.026299556396765813) and spread.p_value == pytest.approx(0.028147028070252073)


def test_labelled_sets_are_nested_and_follow_the_seed():
    cases = [{"image": f"img{i}"} for i in range(10)]
    subsets = labelled_subsets(cases, [2, 5, 10], seed=0)
    assert subsets[2] == subsets[5][:2] and subsets[5] == subsets[10][:5]
    assert sorted(c["image"] for c in subsets[10]) == sorted(c["image"] for c in cases)
    assert labelled_subsets(cases, [2], seed=0) == {2: subsets[2]}
    assert any(labelled_subsets(cases, [5], seed=s)[5] != subsets[5] for s in range(1, 5))
    with pytest.raises(ValueError, match="not between 1 and the 10 training cases"):
        labelled_subsets(cases, [0, 11], seed=0)


def test_labelled_sets_and_held_out_cases_are_the_draws_of_before():
    """The draws behind the reported figures and the committed confirmatory plan, recorded before the seeded
    shuffles were merged into ``shared.data.splits``."""
    cases = list(range(12))
    assert labelled_subsets(cases, [2, 5], seed=2027) == {2: [2, 4], 5: [2, 4, 8, 10, 9]}
    assert labelled_subsets(cases, [12], seed=0)[12] == [1, 9, 8, 5, 10, 2, 3, 7, 4, 0, 11, 6]
    assert held_out_split(list(range(10)), 3, seed=100) == ([1, 2, 3, 6, 7, 8, 9], [0, 4, 5])
    with pytest.raises(ValueError, match="cannot hold out 10 of 10"):
        held_out_split(list(range(10)), 10, seed=100)


def test_tuning_holds_out_training_cases_and_spans_the_grid():
    cases = [{"image": f"img{i}"} for i in range(8)]
    training, held = held_out_split(cases, 3, seed=0)
    assert len(held) == 3 and not {c["image"] for c in training} & {c["image"] for c in held}
    assert grid_points({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]


def test_tuning_scores_held_out_training_cases_only_pretrains_once_and_chooses_per_arm(tmp_path, monkeypatch):
    """``tune`` (its studies stubbed): every grid point is a study of the training cases, scored on the held-out ones
    (never on the task's evaluation cases), at the smallest labelled size the study itself would run (the paper
    sizes with ``full_size``); the encoders of the first point are reused; each arm gets its best point."""
    from tools.study import tune as tune_module

    training = [{"image": f"train{i}"} for i in range(8)]
    evaluation = [{"image": f"eval{i}"} for i in range(4)]
    task = replace(TASKS["btcv"], full_labelled_sizes=(3, "all"))
    monkeypatch.setattr(type(task), "cases", lambda self, dataset_dir, workdir: (training, evaluation))
    monkeypatch.setattr(type(task), "make_synthetic", lambda self, out, seed, **changes: out.mkdir() or out)
    best = {"scratch": 1.0, "mae": 0.5}  # the learning rate at which each arm scores highest
    studies = []

    def fake_study(task, options):
        studies.append(options)
        lr = options.arm_overrides["mae"]["base_learning_rate"]
        runs = [Run(options.labelled_sizes[0], seed, arm, options.output_dir,
                    scores={task.metric: 1.0 - abs(lr - best[arm]) + 0.01 * seed})
                for seed in options.seeds for arm in options.arms]
        return type("Study", (), {"runs": runs, "encoders": {"mae": "mae.pt", "supervised": ""}})()

    monkeypatch.setattr(tune_module, "run_study", fake_study)
    options = StudyOptions(output_dir=tmp_path / "tuning", seeds=[0, 1], arms=["scratch", "mae"], full_size=True)
    tuning = tune_module.tune(task, options, {"base_learning_rate": [0.5, 1.0, 2.0]}, held_out=3)

    assert tuning["chosen"] == {"scratch": {"base_learning_rate": 1.0}, "mae": {"base_learning_rate": 0.5}}
    assert len(studies) == 3 and {o.labelled_sizes[0] for o in studies} == {3}
    for options in studies:
        fitting, scored = options.cases
        assert len(scored) == 3 and not {c["image"] for c in fitting} & {c["image"] for c in scored}
        assert {c["image"] for c in fitting + scored} == {c["image"] for c in training}
    assert studies[0].mae_file is None and {o.mae_file for o in studies[1:]} == {"mae.pt"}
    assert load_tuning(tmp_path / "tuning" / "tuning.json", task) == tuning["chosen"]


def test_a_tuning_grid_is_checked_against_the_fine_tuning_config_before_anything_is_deleted(tmp_path, monkeypatch):
    """A misspelled id (a new, unused config entry), an id the study sets itself on every run, or a value that is not
    a non-empty list is refused, naming it, before the earlier output is replaced or anything runs."""
    from tools.study import tune as tune_module

    out = replace_output_folder(tmp_path / "tuning")
    (out / "tuning.md").write_text("an earlier tuning")
    data = tmp_path / "data"
    data.mkdir()
    task = TASKS["btcv"]
    monkeypatch.setattr(type(task), "cases", lambda self, dataset_dir, workdir: ([{"image": str(i)} for i in range(8)],
                                                                                []))
    monkeypatch.setattr(tune_module, "run_study", lambda task, options: pytest.fail("a study ran"))
    options = StudyOptions(output_dir=out, dataset_dir=data)
    for grid, problem in [({"base_learnng_rate": [0.5]}, r"\['base_learnng_rate'\]: not ids of the btcv fine-tuning"),
                          ({"base_learning_rate": 0.5}, "'base_learning_rate': its values must be a non-empty list"),
                          ({"layer_decay": []}, "'layer_decay': its values must be a non-empty list"),
                          ({"epochs": [5]}, r"\['epochs'\]: the study sets these itself")]:
        with pytest.raises(ValueError, match=problem):
            tune_module.tune(task, options, grid, held_out=3)
        assert (out / "tuning.md").read_text() == "an earlier tuning"
    tune_module.check_grid(task, options, {"base_learning_rate": [0.5], "network_def#patch_size": [4]})


def test_a_tuning_file_is_checked_and_its_errors_name_it(tmp_path):
    path = tmp_path / "tuning.json"
    for content, problem in [("{", "not valid JSON"), ('{"task": "btcv"}', "no 'chosen' table"),
                             ('{"task": "cxr14", "chosen": {"mae": {}}}', "tuned for task 'cxr14', not 'btcv'"),
                             ('{"task": "btcv", "chosen": {"mea": {}}}', r"unknown arms \['mea'\]")]:
        path.write_text(content)
        with pytest.raises(InputError, match=problem) as error:
            load_tuning(path, TASKS["btcv"])
        assert str(error.value).startswith(str(path))


def test_a_study_replaces_only_an_output_folder_a_study_wrote(tmp_path):
    """A mistyped ``--output_dir`` (a data set, the repository) is refused, not deleted; an earlier study's output is
    replaced; a data set inside the output folder is refused before anything is deleted."""
    foreign = tmp_path / "BTCV"
    (foreign / "imagesTr").mkdir(parents=True)
    (foreign / "imagesTr" / "img0001.nii.gz").write_text("a real scan")
    with pytest.raises(FileExistsError, match=f"{foreign} is not empty and no study wrote it"):
        replace_output_folder(foreign)
    assert (foreign / "imagesTr" / "img0001.nii.gz").read_text() == "a real scan"
    with pytest.raises(ValueError, match="holds the data set"):
        replace_output_folder(tmp_path, dataset_dir=foreign)
    assert (foreign / "imagesTr" / "img0001.nii.gz").is_file()

    out = replace_output_folder(tmp_path / "new" / "study")
    assert [p.name for p in out.iterdir()] == [OUTPUT_MARKER]
    (out / "report.md").write_text("an earlier report")
    assert replace_output_folder(out) == out and [p.name for p in out.iterdir()] == [OUTPUT_MARKER]
    assert replace_output_folder(foreign / "imagesTr" / "empty_after_all", foreign).is_dir() is True


def test_a_bad_option_leaves_an_earlier_study_s_output_as_it_was(tmp_path, monkeypatch):
    """The options are checked on the data before the output folder is replaced: a mistyped ``--dataset_dir``, a
    labelled size above the training cases (of a given or a synthetic data set) or a tuning's held-out count too
    large leave the earlier report, and no staging folder, behind."""
    out = replace_output_folder(tmp_path / "study")
    (out / "report.md").write_text("an earlier report")
    data = tmp_path / "data"
    data.mkdir()
    task = TASKS["btcv"]
    monkeypatch.setattr(type(task), "cases", lambda self, dataset_dir, workdir: ([{"image": "a"}, {"image": "b"}],
                                                                                [{"image": "c"}]))
    monkeypatch.setattr(type(task), "make_synthetic", lambda self, out, seed, **changes: out.mkdir() or out)
    attempts = [
        (lambda: run_study(task, StudyOptions(output_dir=out, dataset_dir=tmp_path / "nonexistent")),
         "nonexistent is not a folder"),
        (lambda: run_study(task, StudyOptions(output_dir=out, dataset_dir=data, labelled_sizes=[2, 5])),
         r"labelled sizes \[5\] are not between 1 and the 2 training cases"),
        (lambda: run_study(task, StudyOptions(output_dir=out, labelled_sizes=[3])), r"labelled sizes \[3\]"),
        (lambda: tune(task, StudyOptions(output_dir=out, dataset_dir=data), {"base_learning_rate": [1.0]}, 2),
         "cannot hold out 2 of 2 training cases"),
    ]
    for attempt, problem in attempts:
        with pytest.raises((ValueError, FileNotFoundError), match=problem):
            attempt()
        assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "report.md"]
        assert (out / "report.md").read_text() == "an earlier report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "study"]


def test_a_study_refuses_a_seed_given_twice(tmp_path):
    """Two runs of one seed would share a folder and be counted as two independent pairs."""
    with pytest.raises(ValueError, match=r"seeds \[0\] are given more than once"):
        run_study(TASKS["btcv"], StudyOptions(output_dir=tmp_path / "study", seeds=[0, 0, 1]))
    assert not (tmp_path / "study").exists()


_TINY_ROI = {"roi_size": [32, 32, 32], "num_workers": 0}


def tiny_study_options(out: Path, **changes) -> StudyOptions:
    """A whole btcv study, tiny: 2 training cases of which 1 or 2 are labelled, 2 seeds, a few iterations."""
    options = StudyOptions(
        output_dir=out, seeds=[0, 1], labelled_sizes=[1, 2], steps=2, pretrain_epochs=2,
        synthetic={"num_train": 2, "num_val": 1, "shape": (48, 48, 32), "body_scale": 0.1},
        overrides={"pretrain": {**_TINY_ROI, **TINY_MAE, "network_def#num_layers": 12, "num_samples": 1},
                   "finetune": {**_TINY_ROI, **TINY_VIT}, "evaluate": {**_TINY_ROI, **TINY_VIT}},
    )
    return replace(options, **changes)


TINY_TASK = replace(TASKS["btcv"], supervised_synthetic={"num_train": 2, "num_val": 1}, supervised_steps=2)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """The tiny study, its jobs in two worker processes (about 25 s on 2 CPU cores: its tests are marked slow)."""
    out = tmp_path_factory.mktemp("study")
    result = run_study(TINY_TASK, tiny_study_options(out, workers=2))
    summary = report.summarize(result)
    report.write_summary(summary, out / "summary.json")
    save_runs(result, out / "runs.json")
    report.plot_metric(summary, TINY_TASK.metric_label, out / "metric_vs_labelled.png")
    report.plot_losses(result, out / "loss_curves.png")
    report.write_report(result, summary, out / "report.md")
    return {"result": result, "summary": summary, "out": out}


@pytest.mark.slow
def test_one_worker_gives_the_same_runs_as_two(study, tmp_path):
    """A run's figures depend on its threads, not on which worker ran it: the tiny study's smaller labelled size
    again, every job in this process, one after the other, gives every run the same losses, crops and scores."""
    result = run_study(TINY_TASK, tiny_study_options(tmp_path, labelled_sizes=[1], workers=1))
    assert result.control.scores == study["result"].control.scores
    assert result.pretraining.losses == study["result"].pretraining.losses
    parallel = {r.name: r for r in study["result"].runs}
    for run in result.runs:
        twin = parallel[run.name]
        assert (run.losses, run.fingerprints, run.scores) == (twin.losses, twin.fingerprints, twin.scores), run.name


# the tasks' stage overrides as imported, before any study ran
TASK_STAGES = copy.deepcopy({name: (t.pretrain, t.finetune, t.evaluate) for name, t in TASKS.items()})


@pytest.mark.slow
def test_a_study_leaves_the_tasks_settings_as_they_were(study):
    """A run's overrides (here the tiny network's ``network_def#...``) are applied to a copy: the task's nested
    ``network_def`` is not changed for the next study in the process."""
    assert {name: (t.pretrain, t.finetune, t.evaluate) for name, t in TASKS.items()} == TASK_STAGES


@pytest.mark.slow
def test_every_arm_sees_the_same_cases_in_the_same_order_with_the_same_seed(study):
    runs = {r.name: r for r in study["result"].runs}
    assert len(runs) == 2 * 2 * 4
    for n in (1, 2):
        for seed in (0, 1):
            scratch = runs[f"n{n}_seed{seed}_scratch"]
            for arm in ("mae", "supervised", "untrained"):  # same crops, same order
                assert scratch.fingerprints and runs[f"n{n}_seed{seed}_{arm}"].fingerprints == scratch.fingerprints
    assert runs["n2_seed0_mae"].fingerprints != runs["n2_seed1_mae"].fingerprints  # another seed, other draws
    out = study["out"]
    saved = {f"n{r['labelled']}_seed{r['seed']}_{r['arm']}": r["data_fingerprint"]
             for r in json.loads((out / "runs.json").read_text())}
    assert saved == {name: data_digest(run.fingerprints) for name, run in runs.items()}  # checked in every study
    assert check_same_data(list(runs.values())) and "the data checked in this run" in (out / "report.md").read_text()
    for seed in (0, 1):  # nested labelled sets, shared by the arms through one datalist per size and seed
        small = json.loads((out / "datalists" / f"n1_seed{seed}.json").read_text())["training"]
        large = json.loads((out / "datalists" / f"n2_seed{seed}.json").read_text())["training"]
        assert small == large[:1]
    logs = {arm: (out / "logs" / f"n1_seed0_{arm}.log").read_text() for arm in ARM_NAMES}
    encoders = study["result"].encoders
    assert "MAE encoder from" not in logs["scratch"] and not encoders["scratch"]
    for arm in ("mae", "supervised", "untrained"):  # each arm loads its own encoder file through the bundle's path
        assert f"MAE encoder from {encoders[arm]}" in logs[arm], arm
    assert len({encoders[arm] for arm in ("mae", "supervised", "untrained")}) == 3


@pytest.mark.slow
def test_arms_differ_only_in_their_recipe_and_encoder(study):
    """Every arm's fine-tuning gets the same overrides but the recipe keys and ``pretrained_encoder``; scratch runs
    without layer-wise decay, every other arm with the paper's 0.75."""
    task, options = study["result"].task, study["result"].options
    recipes = {arm: arm_overrides(task, options, arm) for arm in ARM_NAMES}
    assert {tuple(sorted(r)) for r in recipes.values()} == {("base_learning_rate", "layer_decay")}
    assert recipes["scratch"]["layer_decay"] == 1.0
    assert {recipes[arm]["layer_decay"] for arm in ("mae", "supervised", "untrained")} == {0.75}
    configs = {arm: json.loads((study["out"] / "summary.json").read_text())["configuration"]["recipes"][arm]
               for arm in ARM_NAMES}
    assert configs == recipes


@pytest.mark.slow
def test_summary_json_has_the_promised_schema(study):
    summary = json.loads((study["out"] / "summary.json").read_text())
    assert summary["task"] == "btcv" and summary["metric"] == "mean_dice_13"
    assert summary["seeds"] == [0, 1] and summary["labelled_sizes"] == [1, 2]
    assert isinstance(summary["wall_seconds"], float)
    for size in ("1", "2"):
        row = summary["results"][size]
        assert set(row) == {*ARM_NAMES, "contrasts"} and all(len(row[arm]) == 2 for arm in ARM_NAMES)
        assert list(row["contrasts"]) == ["P - S", "M - S", "M - N"]
        for contrast in row["contrasts"].values():
            expected = paired_difference(row[contrast["first"]], row[contrast["second"]])
            assert contrast["mean"] == pytest.approx(expected.mean)
            assert contrast["ci95"] == pytest.approx(list(expected.ci95), nan_ok=True)
            assert contrast["p_holm"] is None or contrast["p_holm"] >= contrast["p_value"]
    assert set(summary["secondary"]) == {"mean_dice_8", "mean_hd95", "misses"}
    assert list(summary["per_class"]["1"]["supervised"])[:2] == ["spleen", "right kidney"]
    for name in ("report.md", "metric_vs_labelled.png", "loss_curves.png", "runs.json"):
        assert (study["out"] / name).is_file()
    assert json_format_errors([study["out"] / "summary.json"]) == []  # a report can be kept in a bundle's docs/
    text = (study["out"] / "report.md").read_text()
    assert "| 1 | P - S |" in text and "| 1 | M - N |" in text and "detectable at 80% power" in text
    assert "MAE health check (held-out images, labels unused): held-out loss" in text
    supervised = summary["configuration"]["supervised_network_scores"]  # the control's own strength, scored
    assert 0.0 <= supervised["mean_dice_13"] <= 1.0
    assert f"scores mean_dice_13 {supervised['mean_dice_13']:.3f} on the evaluation cases by itself" in text


def fake_result(out: Path, scores: dict[str, list], **changes) -> StudyResult:
    """A study's result without running it: 2 labelled cases, one run per seed and arm with the given primary scores
    (``{arm: [score per seed]}``) and a per-class score."""
    from tools.study.study import PositiveControl, Pretraining

    task, arms = TASKS["btcv"], list(scores)
    seeds = list(range(len(next(iter(scores.values())))))
    runs = [Run(2, seed, arm, out, losses=[1.0, 0.5],
                scores={task.metric: scores[arm][seed], "per_class": {"liver": 0.5}}) for seed in seeds for arm in arms]
    options = replace(StudyOptions(output_dir=out, seeds=seeds, labelled_sizes=[2], arms=arms), **changes)
    return StudyResult(task=task, options=options, dataset_dir=out / "data", sizes=[2], steps=10, arms=arms,
                       num_training=5, num_evaluation=4, pretraining=Pretraining(losses=[1.0]), encoders={},
                       control=PositiveControl(), runs=runs, output_dir=out, wall_seconds=1.0)


def test_the_summary_records_how_the_jobs_ran(tmp_path):
    """The figures depend on the threads of a job, so ``summary.json`` records them, and the workers."""
    scores = {"scratch": [0.1, 0.2, 0.3], "mae": [0.2, 0.2, 0.5]}
    config = report.summarize(fake_result(tmp_path, scores, workers=3, threads_per_run=2))["configuration"]
    assert (config["workers"], config["threads_per_run"]) == (3, 2)
    config = report.summarize(fake_result(tmp_path, scores, workers=None, threads_per_run=None))["configuration"]
    assert (config["workers"], config["threads_per_run"]) == (1, 0)  # every core: one job at a time


def test_a_run_that_scored_nothing_is_reported_as_such_and_its_runs_are_kept(tmp_path, monkeypatch):
    """The evaluation writes a NaN score as null: the study's outputs treat it as NaN ("n/a"), its contrasts say that
    a run scored nothing, and runs.json is written before anything that could fail on it."""
    import tools.run_experiment as run_experiment
    from tools.study.study import format_score

    assert math.isnan(paired_difference([0.3, None, 0.2], [0.1, 0.2, 0.1]).mean)
    assert all(math.isnan(v) for v in mean_sd([0.3, None]))
    assert (format_score(None), format_score(float("nan")), format_score(0.12345)) == ("n/a", "n/a", "0.1235")
    result = fake_result(replace_output_folder(tmp_path / "study"),
                         {"scratch": [0.1, 0.2, 0.3], "mae": [0.2, None, 0.5], "supervised": [0.6, 0.7, 0.9]})
    run_experiment._write_outputs(result.task, result)
    contrasts = json.loads((result.output_dir / "summary.json").read_text())["results"]["2"]["contrasts"]
    assert contrasts["M - S"]["mean"] is None and contrasts["P - S"]["mean"] == pytest.approx(0.5333333)
    text = (result.output_dir / "report.md").read_text()
    assert "| 2 | M - S | n/a [n/a, n/a] | n/a (n/a) | n/a | n/a: a run of this pair failed or scored nothing" in text
    assert "| 2 | 0.200 ± 0.100 | n/a ± n/a | 0.733 ± 0.153 |" in text

    def failing(result):
        raise RuntimeError("the report failed")

    monkeypatch.setattr(report, "summarize", failing)
    (result.output_dir / "runs.json").unlink()
    with pytest.raises(RuntimeError, match="the report failed"):
        run_experiment._write_outputs(result.task, result)
    assert [r["scores"]["mean_dice_13"] for r in json.loads((result.output_dir / "runs.json").read_text())][:3] == [
        0.1, 0.2, 0.6]


def _fingerprinted_result(out: Path, digests: dict[tuple[int, str], str]) -> StudyResult:
    """A fake study's result of two seeds and two arms whose runs have the data fingerprints ``{(seed, arm): ...}``."""
    result = fake_result(replace_output_folder(out), {"scratch": [0.1, 0.2], "mae": [0.3, 0.4]})
    for run in result.runs:
        run.data_fingerprint = digests[run.seed, run.arm]
    return result


def test_arms_that_saw_different_batches_stop_the_study_after_runs_json(tmp_path):
    """The report's claim that the arms of a seed saw the same data is checked in every study: when two arms of one
    labelled size and seed have different data fingerprints, runs.json (with the fingerprints) is written and the
    study stops with an error that names them, writing no summary and no report."""
    import tools.run_experiment as run_experiment

    same, other = data_digest([1.0, 2.0]), data_digest([2.0, 1.0])  # the same batches in another order differ
    assert len(same) == 16 and same != other and data_digest([]) == ""
    result = _fingerprinted_result(tmp_path / "study", {(0, "scratch"): same, (0, "mae"): same,
                                                        (1, "scratch"): same, (1, "mae"): other})
    message = rf"labelled size 2, seed 1: scratch \(data fingerprint {same}\) vs mae \(data fingerprint {other}\)\."
    with pytest.raises(RuntimeError, match=message):
        run_experiment._write_outputs(result.task, result)
    out = result.output_dir
    rows = json.loads((out / "runs.json").read_text())
    assert [(r["seed"], r["arm"], r["data_fingerprint"]) for r in rows] == [
        (0, "scratch", same), (0, "mae", same), (1, "scratch", same), (1, "mae", other)]
    assert not (out / "summary.json").exists() and not (out / "report.md").exists()
    with pytest.raises(RuntimeError, match="seed 1"):  # nor can a report be written from these runs directly
        report.write_report(result, report.summarize(result), out / "report.md")


def test_arms_that_saw_the_same_batches_are_reported_as_checked(tmp_path):
    """Matching data fingerprints pass, and the report says that the data were checked in this run."""
    import tools.run_experiment as run_experiment

    digest = data_digest([3.5, 1.25])
    result = _fingerprinted_result(tmp_path / "study", dict.fromkeys([(0, "scratch"), (0, "mae"), (1, "scratch"),
                                                                      (1, "mae")], digest))
    assert check_same_data(result.runs)
    run_experiment._write_outputs(result.task, result)
    text = (result.output_dir / "report.md").read_text()
    assert ("augmentation in every arm; the data checked in this run: every arm of a labelled size and seed trained on "
            "the same batches") in text


def test_a_runs_json_without_data_fingerprints_still_loads(tmp_path):
    """A runs.json written before the data fingerprints were kept loads, its runs not checked (and reported so);
    one written now keeps every run's fingerprint."""
    result = fake_result(tmp_path, {"scratch": [0.1, 0.2], "mae": [0.3, 0.4]})
    old = [{"labelled": r.labelled, "seed": r.seed, "arm": r.arm, "scores": r.scores, "losses": r.losses,
            "seconds": 2.0} for r in result.runs]
    (tmp_path / "runs.json").write_text(json.dumps(old))
    runs = load_runs(tmp_path / "runs.json")
    assert [(r.name, r.scores, r.losses, r.seconds, r.data_fingerprint) for r in runs] == [
        (r.name, r.scores, r.losses, 2.0, "") for r in result.runs]
    assert runs[0].root == tmp_path / "runs" / "n2_seed0_scratch" and not check_same_data(runs)
    reloaded = replace(result, runs=runs)
    text = report.write_report(reloaded, report.summarize(reloaded), tmp_path / "report.md")
    assert "the data not checked in this run: not every run recorded its batch fingerprints" in text
    for i, run in enumerate(result.runs):
        run.data_fingerprint = data_digest([float(i)])
    save_runs(result, tmp_path / "runs.json")
    assert [r.data_fingerprint for r in load_runs(tmp_path / "runs.json")] == [r.data_fingerprint for r in result.runs]


def test_every_task_defines_its_stages_and_metric():
    for name, task in TASKS.items():
        assert task.name == name and task.metric and task.labelled_sizes and task.num_seeds >= 3
        assert all(Path(c).is_file() for stage in (task.pretrain, task.finetune, task.evaluate) for c in stage.configs)
        assert task.epochs_for(task.labelled_sizes[0], task.finetune_steps) >= 1


def test_the_cxr14_cases_of_a_data_set_reached_through_a_link_are_relative_to_it(tmp_path):
    """``--dataset_dir`` may be a symbolic link: the cases are the same, relative to the data set's folder."""
    from tools import synthetic

    data = Path(synthetic.make_cxr14(str(tmp_path / "cxr14"), num_images=6, size=32))
    (tmp_path / "link").symlink_to(data, target_is_directory=True)
    direct = TASKS["cxr14"].cases(data, tmp_path / "direct")
    linked = TASKS["cxr14"].cases(tmp_path / "link", tmp_path / "linked")
    assert linked == direct and all(not Path(case["image"]).is_absolute() for case in direct[0] + direct[1])
    assert direct[0] and direct[1]


def test_the_brats_study_says_it_reads_the_msd_layout_only(tmp_path):
    """A BraTS 2021 folder given to the brats study is refused with the layout the study reads, not with a hint to a
    ``dataset_layout`` option that the study does not have."""
    (tmp_path / "BraTS2021_00000").mkdir()
    with pytest.raises(FileNotFoundError, match="the brats study reads the MSD Task01_BrainTumour layout only"):
        TASKS["brats"].cases(tmp_path, tmp_path / "work")


def test_a_task_without_a_committed_plan_names_the_plans_there_are(tmp_path):
    import tools.run_experiment as run_experiment

    committed = sorted(p.name for p in PLANS.glob("*.json"))
    assert "btcv_confirm.json" in committed and "brats_confirm.json" not in committed
    with pytest.raises(FileNotFoundError, match=re.escape(f"the committed confirmatory plans are {committed}")):
        run_experiment.study("brats", output_dir=str(tmp_path / "confirm"), confirm=True)
    assert not (tmp_path / "confirm").exists()


def test_a_stage_s_overrides_follow_the_size():
    """The small size's overrides are the stage's own, the paper configuration's its ``full_<stage>``; the study adds
    its own on top."""
    from tools.study.study import stage_overrides

    task = replace(TASKS["btcv"], full_finetune={"epochs": 7})
    assert task.stage_overrides("finetune", full_size=False) is task.finetune.overrides
    assert task.stage_overrides("finetune", full_size=True) == {"epochs": 7}
    assert task.stage_overrides("evaluate", full_size=True) == {}
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        task.stage_overrides("train", full_size=False)
    options = StudyOptions(output_dir=Path("unused"), full_size=True, overrides={"finetune": {"steps": 1}})
    assert stage_overrides(task, "finetune", options) == {"epochs": 7, "steps": 1}
    assert {"network_def#hidden_size": TINY_ENCODER["hidden_size"]}.items() <= TINY_UNETR.items()


@pytest.mark.parametrize("task_name,seeds", [("btcv", [0, 1, 2]), ("brats", list(range(8)))])
def test_a_study_without_seeds_gets_its_task_s_number_of_seeds(task_name, seeds, monkeypatch):
    """BraTS needs 8 seeds for its positive control to be seen at 2 labelled cases; the others keep 3."""
    import tools.run_experiment as run_experiment

    seen = []
    monkeypatch.setattr(run_experiment, "run_study", lambda task, options: seen.append(options))
    monkeypatch.setattr(run_experiment, "_write_outputs", lambda task, result: None)
    run_experiment.study(task_name)
    run_experiment.study(task_name, num_seeds=2, seed=5)
    assert [options.seeds for options in seen] == [seeds, [5, 6]]
    # single-threaded jobs at the small size, every core for one job at a time at the paper's
    assert (seen[0].threads_per_run, seen[0].workers) == (1, None)
    run_experiment.study(task_name, full_size=True)
    run_experiment.study(task_name, workers=3, threads_per_run=2)
    assert [(o.threads_per_run, o.workers) for o in seen[2:]] == [(None, None), (2, 3)]


def test_the_command_line_reads_labelled_sizes_with_all_and_a_confirmatory_run_takes_no_study_options(monkeypatch):
    """``--labelled_sizes "[2,all]"`` (documented for brats) reaches the study as ``[2, "all"]``; ``--confirm`` refuses
    every option that its plan fixes instead of ignoring it, and passes on where it writes and how its jobs run."""
    import fire

    import tools.run_experiment as run_experiment

    seen, plans = [], []
    monkeypatch.setattr(run_experiment, "run_study", lambda task, options: seen.append(options))
    monkeypatch.setattr(run_experiment, "_write_outputs", lambda task, result: None)
    monkeypatch.setattr(run_experiment, "_run_plan", lambda task, path, out, parallel: plans.append((path, out,
                                                                                                     parallel)))
    fire.Fire(run_experiment.study, command=["brats", "--labelled_sizes", "[2,all]"])
    assert seen[0].labelled_sizes == [2, "all"]
    for refused in (["--dataset_dir", "/data/BTCV"], ["--full_size"], ["--seeds", "[0]"], ["--steps", "5"],
                    ["--hyperparameters", "tuning.json"], ["--arms", "[scratch]"]):
        with pytest.raises(ValueError, match=f"remove \\['{refused[0][2:]}'\\]"):
            fire.Fire(run_experiment.study, command=["btcv", "--confirm", *refused])
    assert plans == []
    fire.Fire(run_experiment.study, command=["btcv", "--confirm", "--output_dir", "out", "--workers", "2"])
    assert plans == [(PLANS / "btcv_confirm.json", Path("out"), {"workers": 2, "threads_per_run": 1})]


def test_a_confirmatory_run_refuses_a_plan_in_its_output_folder_and_keeps_the_bytes_it_hashed(tmp_path, monkeypatch):
    """The study replaces its output folder, so a plan there is refused before anything runs; the plan.json of the
    output is the file as it was read and hashed, whatever happens to the file during the run."""
    import tools.run_experiment as run_experiment

    committed = (PLANS / "btcv_confirm.json").read_bytes()
    out = replace_output_folder(tmp_path / "confirm")
    (out / "plan.json").write_bytes(committed)
    studies = []

    def fake_study(task, options):  # replaces the output folder as a study does; the plan file changes meanwhile
        studies.append(options)
        replace_output_folder(options.output_dir)
        (tmp_path / "plan.json").write_text("edited during the run")
        return type("Result", (), {"output_dir": options.output_dir})()

    monkeypatch.setattr(run_experiment, "run_study", fake_study)
    monkeypatch.setattr(run_experiment, "_write_outputs", lambda task, result, confirmatory: None)
    # a copy of the committed plan, taken as committed and never run (both checked in the tests below)
    monkeypatch.setattr(run_experiment, "committed_plan_state", lambda path: {"commit": "0" * 40,
                                                                               "uncommitted_changes": False})
    monkeypatch.setattr(run_experiment, "check_first_run", lambda digest, output_dir: None)
    with pytest.raises(ValueError, match=f"the plan file {out / 'plan.json'} lies inside the output folder"):
        run_experiment.study("btcv", output_dir=str(out), confirm=True, plan_file=str(out / "plan.json"))
    assert studies == [] and (out / "plan.json").read_bytes() == committed

    (tmp_path / "plan.json").write_bytes(committed)
    run_experiment.study("btcv", output_dir=str(out), confirm=True, plan_file=str(tmp_path / "plan.json"))
    assert len(studies) == 1 and (out / "plan.json").read_bytes() == committed


def _git_repo(folder: Path) -> Path:
    """A git repository in ``folder`` whose first commit holds the committed btcv plan and a README."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True,
                       capture_output=True)

    folder.mkdir()
    git("init", "-q")
    (folder / "plan.json").write_bytes((PLANS / "btcv_confirm.json").read_bytes())
    (folder / "README").write_text("a repository\n")
    git("add", "plan.json", "README")
    git("commit", "-q", "-m", "plan")
    return folder


def test_a_confirmatory_run_needs_its_plan_committed_and_unmodified(tmp_path):
    """"Confirmatory run of the committed plan": a plan untracked, edited since its commit, or outside any git
    repository is refused; a committed one gives its commit and whether anything else in the work tree changed."""
    import subprocess

    from tools.study.plan import committed_plan_state

    repo = _git_repo(tmp_path / "repo")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert committed_plan_state(repo / "plan.json") == {"commit": head, "uncommitted_changes": False}
    (repo / "README").write_text("changed\n")
    assert committed_plan_state(repo / "plan.json") == {"commit": head, "uncommitted_changes": True}
    (repo / "other_plan.json").write_bytes((repo / "plan.json").read_bytes())
    with pytest.raises(ValueError, match="other_plan.json is not a file tracked by git.*needs a plan committed"):
        committed_plan_state(repo / "other_plan.json")
    (repo / "plan.json").write_text((repo / "plan.json").read_text().replace('"alpha": 0.05', '"alpha": 0.050'))
    with pytest.raises(ValueError, match="plan.json differs from its committed version at HEAD"):
        committed_plan_state(repo / "plan.json")
    (tmp_path / "loose.json").write_text("{}")
    with pytest.raises(ValueError, match="loose.json is not a file tracked by git"):
        committed_plan_state(tmp_path / "loose.json")


def test_a_plan_that_has_run_and_an_output_folder_holding_a_result_are_refused(tmp_path, monkeypatch):
    """A plan runs once as a confirmatory study: the committed btcv plan, whose result unetr_btcv_seg publishes, is
    refused before anything runs; so is an output folder that holds a confirmatory result (never replaced)."""
    import tools.run_experiment as run_experiment
    from tools.study.plan import REPO, check_first_run

    monkeypatch.setattr(run_experiment, "run_study", lambda task, options: pytest.fail("the study ran"))
    monkeypatch.setattr(run_experiment, "committed_plan_state", lambda path: {"commit": "0" * 40,
                                                                               "uncommitted_changes": False})
    published = REPO / "bundles/unetr_btcv_seg/docs/confirmatory_study/summary.json"
    with pytest.raises(ValueError, match=f"has run; results in {re.escape(str(published))}; a re-run is not "
                                         "confirmatory: write and commit a new plan"):
        run_experiment.study("btcv", output_dir=str(tmp_path / "confirm"), confirm=True)
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"task": "btcv", "plan_sha256": "1" * 64}))
    with pytest.raises(FileExistsError, match=f"output folder {out} holds a confirmatory result"):
        check_first_run("2" * 64, out, root=tmp_path)
    (out / "summary.json").write_text(json.dumps({"task": "btcv"}))  # a development study's: replaced as before
    check_first_run("2" * 64, out, root=tmp_path)


def test_a_plan_must_read_its_results_as_the_report_does():
    """The plan's endpoint, contrasts, alpha, correction and positive-control rule are what report.py computes: the
    committed plan passes; a plan that promises another level, correction, contrast or rule is refused."""
    content, _, _ = load_plan(PLANS / "btcv_confirm.json")
    task = TASKS["btcv"]
    options = options_from_plan(content, Path("unused"))
    check_plan(task, options, content)
    changes = {"alpha": 0.01, "correction": "bonferroni", "contrasts": ["M - S"], "endpoint": "mean_dice_8: Dice",
               "positive_control_rule": "the design can see a gain when M - S is above 0 at 8 labelled cases"}
    for key, value in changes.items():
        with pytest.raises(ValueError, match=f"not be the committed plan:\n  {key}: plan"):
            check_plan(task, options, {**content, key: value})


@pytest.mark.parametrize("task_name", ["btcv", "brats"])
def test_the_segmentation_studies_fine_tune_the_linear_head_vit_on_the_mae_s_patches(task_name):
    """The network every arm fine-tunes and is evaluated with is the linear-head ViT (its decoder cannot learn the
    task by itself), with the MAE's encoder shape, so that the MAE and the supervised encoders load strictly; its crop
    holds the paper's 216 tokens."""
    task = TASKS[task_name]
    networks = {}
    for name, stage in (("finetune", task.finetune), ("evaluate", task.evaluate)):
        parser = ConfigParser()
        parser.read_config([str(c) for c in stage.configs])
        parser.update(stage.overrides)
        with bundle_importable(stage.configs[0].parents[1]):
            networks[name] = parser.get_parsed_content("network_def")
    pretrain = task.pretrain.overrides
    mae_config = ConfigParser()
    mae_config.read_config([str(c) for c in task.pretrain.configs])
    for net in networks.values():
        assert type(net).__name__ == "ViTLinearSeg" and net.patch_size == (pretrain["patch_size"],) * 3
        assert net.vit.blocks[0].mlp.linear1.out_features == pretrain["network_def#mlp_dim"]
        assert net.vit.patch_embedding.position_embeddings.shape[-1] == pretrain["network_def#hidden_size"]
        assert net.vit.patch_embedding.position_embeddings.shape[1] == 216
        assert net.vit.patch_embedding.patch_embeddings.in_channels == mae_config["network_def"]["in_channels"]


def test_the_committed_confirmatory_plan_is_what_a_confirm_run_resolves():
    """``--confirm`` runs exactly the committed plan: every setting it resolves from the task's code and the plan's
    options equals the plan's, and the plan fixes what a confirmatory run needs before it runs."""
    content, digest, _ = load_plan(PLANS / "btcv_confirm.json")
    task = TASKS[content["task"]]
    options = options_from_plan(content, Path("unused"))
    resolved = check_plan(task, options, content)
    assert {k: resolved[k] for k in RESOLVED_KEYS} == {k: content[k] for k in RESOLVED_KEYS}
    assert len(digest) == 64 and len(content["seeds"]) >= 8
    assert content["data_seed"] not in (0, content.get("tuning_data_seed"))  # a draw nothing was chosen on
    assert content["arms"] == list(ARM_NAMES) and content["contrasts"] == ["P - S", "M - S", "M - N"]
    assert {"endpoint", "alpha", "correction", "positive_control_rule"} <= set(content)


def test_a_run_that_is_not_the_plan_is_refused(tmp_path):
    content, _, _ = load_plan(PLANS / "btcv_confirm.json")
    task = TASKS[content["task"]]
    changed = replace(options_from_plan(content, tmp_path), steps=content["finetune_steps"] + 1,
                      arm_overrides={"mae": {"layer_decay": 0.5}})
    with pytest.raises(ValueError, match="not be the committed plan") as error:
        check_plan(task, changed, content)
    assert "finetune_steps" in str(error.value) and "recipes" in str(error.value)
    other_geometry = replace(options_from_plan(content, tmp_path), overrides={"finetune": {"roi_size": [48, 48, 48]}})
    with pytest.raises(ValueError, match="stages: plan"):
        check_plan(task, other_geometry, content)
    broken = tmp_path / "plan.json"
    broken.write_text('{"task": "btcv",')
    with pytest.raises(ValueError, match=f"{broken} is not valid JSON"):
        load_plan(broken)


def test_holm_and_the_minimum_detectable_effect():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([float("nan"), 0.02])[0]) and holm([float("nan"), 0.02])[1] == pytest.approx(0.02)
    # paired SD 0.023: 0.075 Dice with 3 seeds, 0.027 with 8 (the study's design figures)
    assert minimum_detectable_effect(0.023, 3) == pytest.approx(0.0751, abs=1e-4)
    assert minimum_detectable_effect(0.023, 8) == pytest.approx(0.0266, abs=1e-4)
    assert math.isnan(minimum_detectable_effect(0.023, 1))
    for n in (3, 5, 8, 30):  # at that difference scipy's noncentral t gives the power asked for
        shift = minimum_detectable_effect(1.0, n) * math.sqrt(n)
        critical = stats.t.ppf(0.975, n - 1)
        power = stats.nct.sf(critical, n - 1, shift) + stats.nct.cdf(-critical, n - 1, shift)
        assert power == pytest.approx(0.8, abs=1e-4), n
    assert paired_t_power(0.0, 5) == pytest.approx(0.05, abs=1e-4)  # no difference: rejected at the test's level
    assert minimum_detectable_effect(1.0, 2) == pytest.approx(16.334 / math.sqrt(2), rel=1e-3)  # by simulation: 0.80
    half = minimum_detectable_effect(1.0, 5, power=0.5)  # a power below one half is solved too
    assert paired_t_power(half * math.sqrt(5), 5) == pytest.approx(0.5, abs=1e-4)
    with pytest.raises(ValueError, match="power must lie between alpha"):
        minimum_detectable_effect(1.0, 5, power=0.04)


def test_a_contrast_is_read_in_its_metric_s_direction():
    """A lower HD95 or fewer misses is the better result: a negative difference then favours the first arm."""
    row = {"first": "supervised", "second": "scratch", "mean": -378.3, "ci95": (-395.6, -361.1), "p_holm": 0.0}
    assert report._verdict(row, lower_is_better=True) == "supervised better (CI below 0, Holm p = 0.000)"
    assert report._verdict(row) == "scratch better (CI below 0, Holm p = 0.000)"
    above = {**row, "ci95": (0.3, 0.4), "p_holm": 0.05}
    assert report._verdict(above) == "supervised better (CI above 0, Holm p = 0.050)"
    assert report._verdict(above, lower_is_better=True).startswith("scratch better (CI above 0")
    # an interval that excludes 0 is not adjusted for the other contrasts: "better" only after Holm
    unadjusted = {**row, "ci95": (0.01, 0.05), "p_holm": 0.078}
    assert report._verdict(unadjusted) == ("unadjusted CI above 0, leaning to supervised; not significant after Holm "
                                           "(p = 0.078)")
    assert "better" not in report._verdict(unadjusted, lower_is_better=True)
    assert report._verdict({**row, "ci95": (-0.1, 0.4)}) == "no difference shown (CI contains 0)"
    assert set(report.LOWER_IS_BETTER) <= set(report.SECONDARY)


def test_the_supervised_encoder_trains_its_iterations_with_its_task_s_recipe(tmp_path, monkeypatch):
    """The control's budget is ``supervised_steps`` iterations: its epochs follow from the training cases its data
    set has (BraTS and CXR14 generators are sized by ``num_cases``/``num_images``, not ``num_train``); its learning
    rate is the task's (``supervised_recipe``, else the scratch recipe), never a tuning grid's point."""
    from tools.study import study as study_module
    from tools.study.progress import PlannedStage

    seen = {}
    monkeypatch.setattr(study_module, "run_bundle", lambda configs, root, log, overrides, progress: seen.update(
        overrides))
    cases = [{"image": f"i{k}", "label": f"l{k}"} for k in range(10)]
    task = replace(TASKS["brats"], supervised_steps=300, supervised_synthetic={"num_cases": 12})
    monkeypatch.setattr(type(task), "make_synthetic", lambda self, out, seed, **changes: out)
    monkeypatch.setattr(type(task), "cases", lambda self, dataset_dir, workdir: (cases, cases[:2]))
    stage = PlannedStage("finetune", "supervised encoder", 1, task.supervised_steps)
    # a tuning grid's point for the scratch arm must not change the control's network
    options = StudyOptions(output_dir=tmp_path, arm_overrides={"scratch": {"base_learning_rate": 123.0}})
    _, labelled = study_module.supervised_encoder(task, options, stage)
    assert labelled == 10  # what the report states, whatever the generator's argument is called
    assert seen["epochs"] == stage.epochs == 60 and stage.iterations_per_epoch == 5  # 10 cases, 2 per batch
    assert seen["base_learning_rate"] == task.supervised_recipe["base_learning_rate"] == 0.1
    cxr14 = replace(TASKS["cxr14"], supervised_steps=300)
    monkeypatch.setattr(type(cxr14), "make_synthetic", lambda self, out, seed, **changes: out)
    monkeypatch.setattr(type(cxr14), "cases", lambda self, dataset_dir, workdir: (cases, cases[:2]))
    study_module.supervised_encoder(cxr14, options, stage)  # no supervised_recipe: scratch's
    assert seen["base_learning_rate"] == cxr14.recipes["scratch"]["base_learning_rate"]


def test_jobs_run_with_their_threads_and_an_in_process_error_is_raised_at_once(monkeypatch):
    import torch

    from tools.study import workers
    from tools.study.workers import available_cores, default_workers, study_executor, torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert default_workers(1) == min(available_cores(), 8) and default_workers(None) == 1
    monkeypatch.setattr(workers, "available_cores", lambda: 64)
    assert default_workers(1) == workers.MAX_DEFAULT_WORKERS and default_workers(16) == 4
    monkeypatch.setattr(workers, "available_cores", lambda: 1)
    assert default_workers(2) == 1
    executor = study_executor(1, threads_per_run=1)
    assert executor.submit(torch.get_num_threads).result() == 1 and torch.get_num_threads() == before
    with pytest.raises(ZeroDivisionError):
        executor.submit(lambda: 1 / 0)  # not after the jobs submitted behind it have run


def test_the_study_clock_counts_a_finished_job_and_its_workers():
    from tools.study.progress import PlannedStage, StudyClock

    runs = [PlannedStage("finetune", f"run{i}", epochs=10, iterations_per_epoch=3) for i in range(4)]
    clock = StudyClock(runs, workers=2)
    clock.finish(runs[0], 60.0)  # 30 iterations in 60 s
    assert runs[0].done == 10 and clock.seconds_per_iteration("finetune") == 2.0
    assert clock.fraction_done() == 0.25 and clock.remaining() == 3 * 60.0 / 2


def test_benchmark_study_times_a_step_of_every_stage_the_study_trains():
    """``tools/measure/benchmark_study.py`` builds each stage's network from the study's own overrides (the
    linear-head ViT for BTCV and BraTS fine-tuning, the MAE for pre-training) and times its training step before and
    after the study's CPU levers (timings not asserted: positive numbers only)."""
    from tools.measure.benchmark_study import step_seconds
    from tools.study.tasks import brats, btcv

    for stage, options in ((btcv.finetune, {"channels_last": True}), (brats.finetune, {"channels_last": True}),
                           (btcv.pretrain, {"channels_last": False, "mae": True})):
        before, after = step_seconds(stage, steps=1, **options)
        assert before > 0 and after > 0


def test_a_finished_stage_of_no_iterations_does_not_break_the_estimate():
    """Scoring a given positive-control file is a job of 0 epochs: the clock's estimate stays finite."""
    from tools.study.progress import PlannedStage, StudyClock

    given, run = PlannedStage("finetune", "supervised encoder", 0, 300), PlannedStage("finetune", "run", 10, 1)
    clock = StudyClock([given, run], workers=2)
    clock.finish(given, 5.0)
    assert clock.remaining() == 0.0 and "ETA" in clock.line("scored")
