"""Patient-wise 4-fold cross-validation within DS1: how each design choice does on unseen patients.

Every choice the product makes is compared here, before DS2 is looked at. Each job trains on three
folds of DS1 records and scores the fourth; confusions are pooled over the folds.

    python lab/cv.py --data-dir ../shared/data/mitdb --offline            # every config, both modes
    python lab/cv.py --configs base,gamma0 --modes diagnostic --epochs 6  # a subset
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the product: the repository root

import data_loader as dl  # noqa: E402
from evaluate import confusion, metrics  # noqa: E402
from outputs import write_json, write_text  # noqa: E402
from variants import is_ratio  # noqa: E402

# Each config changes one thing from "base" (the product's defaults); values are TrainConfig fields (or
# variants.LabTrainConfig's), network keyword arguments (model_*: DualBranchNet's, or variants.LabNet's),
# preprocessing values (DATA_DEFAULTS) or "rr": the subset of RR features the model sees.
# base's training is TrainConfig's (focal gamma 1: the product's diagnostic mode trains gamma 2, hence the
# "gamma2" configs); its network is the product's for the job's mode (model.design: since round 49 the
# diagnostic network takes the logarithms of its RR inputs; the configs of earlier rounds trained raw inputs,
# so rerun one as it ran with "model_rr_scale": "raw" added).
CONFIGS = {
    "base": {},
    "rr_pre_post_only": {"rr": {"diagnostic": ("pre", "post"), "realtime": ("pre", "prev")}},
    "rr_plus_local10": {"rr": {
        "diagnostic": dl.RR_FEATURES["diagnostic"] + ("local", "pre/local", "post/local", "local/long"),
        "realtime": dl.RR_FEATURES["realtime"] + ("local", "pre/local", "prev/local", "local/long")}},
    "alpha_low_FQ": {"alpha": [1.0, 1.0, 1.0, 0.2, 0.2]},  # adopted as the default after round 3 (F: until round 40)
    "alpha_none": {"alpha": None},
    "rr_pre_post_alpha_low_FQ": {"rr": {"diagnostic": ("pre", "post"), "realtime": ("pre", "prev")},
                                 "alpha": [1.0, 1.0, 1.0, 0.2, 0.2]},
    "gamma0_ce": {"gamma": 0.0},
    "gamma2": {"gamma": 2.0},
    "balance0_natural": {"balance": 0.0},
    "balance1_full": {"balance": 1.0},
    "no_augment": {"augment": False},
    "no_ema": {"ema": 0.0},
    "epochs_x2": {"epochs_factor": 2},
    "lr_1e-3": {"lr": 1e-3},
    "wide_cnn": {"model_channels": (32, 64, 96)},
    # Round 4 compared the six features of that time ("base" then) with the three 'slow' ones added
    # ("rr_plus_slow90", now the product's list); this config is the round-4 base under today's code.
    "rr_without_slow": {"rr": {
        "diagnostic": ("pre", "post", "long", "pre/long", "post/long", "post/pre"),
        "realtime": ("pre", "prev", "long", "pre/long", "prev/long", "pre/prev")}},
}
# Round 6 compared the beat alone with a template channel of 32 beats ("template32" then, the
# product's since); these are the product without it, and with other template lengths.
CONFIGS["no_template"] = {"model_template": False}
for k in (16, 64):
    CONFIGS[f"template{k}"] = {"template_beats": k}
# The product's validation records (outside the held-out fold) left out of training, the checkpoint
# still the last one: with round 7's --select-checkpoint, it separates the two effects of main.py's rule.
CONFIGS["drop_validation_records"] = {"drop_validation": True}
for q in (75, 90, 95, 98):  # quantiles for 'slow' (the product's: 95 since round 10; 90 before)
    CONFIGS[f"slow_q{q}"] = {"slow_quantile": q / 100}
# The span of the long running average and of the 'slow' quantile (the product's: 300 s).
for secs in (120, 600):
    CONFIGS[f"long{secs}s"] = {"long_seconds": float(secs)}
# Less capacity to learn DS1 patients' own morphology (round 22; extra CNN inputs lost in rounds 11
# and 21): a narrower CNN, or heavier dropout in the head; with diagnostic mode's focal gamma 2.
CONFIGS["gamma2_narrow_cnn"] = {"model_channels": (8, 16, 24), "gamma": 2.0}
CONFIGS["gamma2_dropout50"] = {"model_dropout": 0.5, "gamma": 2.0}
# The loss once more after round 18 moved gamma from 1 to 2 (round 23): gamma 3, and S weighted x2 in
# the focal alpha (the "focal alpha" lever; F and Q stay at 0.2).
CONFIGS["gamma3"] = {"gamma": 3.0}
CONFIGS["gamma2_alpha_S2"] = {"alpha": [1.0, 2.0, 1.0, 0.2, 0.2], "gamma": 2.0}
# Round 24, under gamma 2: class-balanced sampling between the product's 0.5 and round 18's losing
# 1.0 (0.75), and a slower moving average of the weights (decay 0.999 against 0.998).
CONFIGS["gamma2_balance75"] = {"balance": 0.75, "gamma": 2.0}
CONFIGS["gamma2_ema999"] = {"ema": 0.999, "gamma": 2.0}
# Round 27, under gamma 2: template swap (variants.LabTrainConfig.template_self), each training beat's
# template replaced by the beat itself with probability 0.25 or 0.5.
for p in (25, 50):
    CONFIGS[f"gamma2_selftemplate{p}"] = {"template_self": p / 100, "gamma": 2.0}
# Round 28: 24 epochs under gamma 2 (the one-cycle schedule stretched over twice the steps); rounds 4
# and 5 found +0.015 and +0.010 for it on earlier designs, within the spread between seeds.
CONFIGS["gamma2_epochs_x2"] = {"epochs_factor": 2, "gamma": 2.0}
# Round 29: diagnostic mode's RR inputs plus the interval before the previous beat's and the ratio to
# it ('prev', 'pre/prev', which real-time mode has and diagnostic mode never had), under gamma 2.
CONFIGS["gamma2_rr_plus_prev"] = {"rr": {"diagnostic": dl.RR_FEATURES["diagnostic"] + ("prev", "pre/prev")},
                                  "gamma": 2.0}
# Round 30, under gamma 2: what augmentation contributes (none at all), and one more kind of it, time
# warp (variants.LabTrainConfig.time_warp): each training beat and its template stretched about the R-peak
# by a factor in [1/1.15, 1.15].
CONFIGS["gamma2_no_augment"] = {"augment": False, "gamma": 2.0}
CONFIGS["gamma2_timewarp15"] = {"time_warp": 0.15, "gamma": 2.0}
# Round 31, ablations of today's diagnostic model (gamma 2): without the template channel, without the
# 'slow' RR inputs, without the moving average of the weights.
CONFIGS["gamma2_no_template"] = {"model_template": False, "gamma": 2.0}
CONFIGS["gamma2_rr_without_slow"] = {"rr": {"diagnostic": CONFIGS["rr_without_slow"]["rr"]["diagnostic"]}, "gamma": 2.0}
CONFIGS["gamma2_no_ema"] = {"ema": 0.0, "gamma": 2.0}
# Round 33, under gamma 2: class-balanced sampling on the other side of the product's 0.5 (0.25; round
# 24's 0.75 found more S beats with more false alarms), and weight decay x10 (1e-3: less room to learn
# DS1 patients' own morphology, as round 22 tried with less capacity).
CONFIGS["gamma2_balance25"] = {"balance": 0.25, "gamma": 2.0}
CONFIGS["gamma2_wd1e-3"] = {"weight_decay": 1e-3, "gamma": 2.0}
# Round 34, under gamma 2: the optimiser's two settings never searched, the peak learning rate of the
# one-cycle schedule (1e-3 against 3e-3) and the batch (128 against 256: twice the steps, more noise).
CONFIGS["gamma2_lr1e-3"] = {"lr": 1e-3, "gamma": 2.0}
CONFIGS["gamma2_batch128"] = {"batch_size": 128, "gamma": 2.0}
# Round 35, under gamma 2: dropout 0.1 (round 22's 0.5 lost to the product's 0.3), and the template as the
# median of the last 64 beats (round 6 chose 32 over 16 and 64 on a design since changed).
CONFIGS["gamma2_dropout10"] = {"model_dropout": 0.1, "gamma": 2.0}
CONFIGS["gamma2_template64"] = {"template_beats": 64, "gamma": 2.0}
# Round 37, under gamma 2: the width of the RR branch (the dense net on the RR features, where S
# detection lives; 32 units per layer, never searched), halved and doubled.
for units in (16, 64):
    CONFIGS[f"gamma2_rr_hidden{units}"] = {"model_rr_hidden": units, "gamma": 2.0}
CONFIGS["rr_hidden64"] = {"model_rr_hidden": 64}  # real-time mode's check (gamma 1)
# Round 38: the next step of round 37's width, 128 units, under gamma 2.
CONFIGS["gamma2_rr_hidden128"] = {"model_rr_hidden": 128, "gamma": 2.0}
CONFIGS["rr_hidden128"] = {"model_rr_hidden": 128}  # real-time mode's check (gamma 1)
# Round 38 adopted 128 units (config.RR_HIDDEN), so from then on 'base' and 'gamma2' run 128 units; these
# run the 32 units of every round before (rounds 36-37's base, for instance).
CONFIGS["rr_hidden32"] = {"model_rr_hidden": 32}
CONFIGS["gamma2_rr_hidden32"] = {"model_rr_hidden": 32, "gamma": 2.0}
# Round 39, under gamma 2: the RR branch's next step (256 units), and the fusion head's hidden layer (64
# units, never searched), doubled now that it takes 48 + 128 inputs.
CONFIGS["gamma2_rr_hidden256"] = {"model_rr_hidden": 256, "gamma": 2.0}
CONFIGS["rr_hidden256"] = {"model_rr_hidden": 256}  # real-time mode's check (gamma 1)
CONFIGS["gamma2_head128"] = {"model_hidden": 128, "gamma": 2.0}
CONFIGS["head128"] = {"model_hidden": 128}  # real-time mode's check (gamma 1)
# Round 40, under gamma 2: the focal alpha, last searched in round 3 on an early design. F weighted 1 as
# N, S, V (F beats taken for V are V false alarms), and V weighted 0.5 (V +P is V's weak side on DS1).
CONFIGS["gamma2_alpha_F1"] = {"alpha": [1.0, 1.0, 1.0, 1.0, 0.2], "gamma": 2.0}
CONFIGS["alpha_F1"] = {"alpha": [1.0, 1.0, 1.0, 1.0, 0.2]}  # real-time mode's check (gamma 1)
CONFIGS["gamma2_alpha_V05"] = {"alpha": [1.0, 1.0, 0.5, 0.2, 0.2], "gamma": 2.0}
CONFIGS["alpha_V05"] = {"alpha": [1.0, 1.0, 0.5, 0.2, 0.2]}  # real-time mode's check (gamma 1)
# Round 40 adopted F weighted 1 (config.ALPHA), so from then on 'base' and 'gamma2' weight F 1;
# these run the F weight 0.2 of every round before.
CONFIGS["alpha_F02"] = {"alpha": [1.0, 1.0, 1.0, 0.2, 0.2]}
CONFIGS["gamma2_alpha_F02"] = {"alpha": [1.0, 1.0, 1.0, 0.2, 0.2], "gamma": 2.0}
# Round 42: where the CNN looks. Its three blocks see about 100 ms of the window each, then average
# over all of it, so where a feature lies (the P wave before the QRS, the T wave after) is lost.
# pool5: the average over five equal spans of the window instead of one (156 ms each); cnn4: a fourth
# block (64 channels), which doubles what one position sees.
CONFIGS["gamma2_pool5"] = {"model_pool": 5, "gamma": 2.0}
CONFIGS["pool5"] = {"model_pool": 5}  # real-time mode's check (gamma 1)
CONFIGS["gamma2_cnn4"] = {"model_channels": (16, 32, 48, 64), "gamma": 2.0}
CONFIGS["cnn4"] = {"model_channels": (16, 32, 48, 64)}  # real-time mode's check (gamma 1)
# Round 44: the fusion's balance. Round 42's five spans raised V and N but lost S, which is told by its
# timing: the head leant on the CNN. cnn_drop25 zeroes the CNN branch's features of a random quarter of
# the training beats, so the head must also decide from the RR branch alone; on base and on five spans.
CONFIGS["gamma2_cnn_drop25"] = {"model_cnn_dropout": 0.25, "gamma": 2.0}
CONFIGS["cnn_drop25"] = {"model_cnn_dropout": 0.25}  # real-time mode's check (gamma 1)
CONFIGS["gamma2_pool5_cnn_drop25"] = {"model_pool": 5, "model_cnn_dropout": 0.25, "gamma": 2.0}
CONFIGS["pool5_cnn_drop25"] = {"model_pool": 5, "model_cnn_dropout": 0.25}  # real-time mode's check (gamma 1)
# Round 46: how the CNN weighs its features. se: squeeze-excitation gating in each block (a beat's own
# features choose which channels count); maxavg: each feature map's maximum over the window beside its mean
# (a feature found once, such as an ectopic P wave, is diluted in the mean, not in the maximum).
CONFIGS["gamma2_se"] = {"model_se": True, "gamma": 2.0}
CONFIGS["se"] = {"model_se": True}  # real-time mode's check (gamma 1)
CONFIGS["gamma2_maxavg"] = {"model_global_max": True, "gamma": 2.0}
CONFIGS["maxavg"] = {"model_global_max": True}  # real-time mode's check (gamma 1)
# Round 47: sharpness-aware minimisation (variants.LabTrainConfig.sam_rho), a flat minimum for unseen patients.
CONFIGS["gamma2_sam05"] = {"sam_rho": 0.05, "gamma": 2.0}
CONFIGS["sam05"] = {"sam_rho": 0.05}  # real-time mode's check (gamma 1)
# Round 48: label smoothing 0.1 in the focal loss (variants.LabTrainConfig.label_smoothing).
CONFIGS["gamma2_smooth10"] = {"label_smoothing": 0.1, "gamma": 2.0}
CONFIGS["smooth10"] = {"label_smoothing": 0.1}  # real-time mode's check (gamma 1)
# Round 49: how the RR inputs enter the dense branch, never searched: raw seconds and ratios until now.
# rr_log: their logarithms (early and late equally far from 0; a pause of seconds no longer dwarfs the
# rest); rr_bn: each input standardised by a batch-norm layer before the first dense layer.
CONFIGS["gamma2_rr_log"] = {"model_rr_scale": "log", "gamma": 2.0}
CONFIGS["rr_log"] = {"model_rr_scale": "log"}  # real-time mode's check (gamma 1)
CONFIGS["gamma2_rr_bn"] = {"model_rr_scale": "batchnorm", "gamma": 2.0}
CONFIGS["rr_bn"] = {"model_rr_scale": "batchnorm"}  # real-time mode's check (gamma 1)
# Round 51: the product's second network (five spans, raw inputs) with logarithms instead, beside the first.
CONFIGS["gamma2_pool5_log"] = {"model_pool": 5, "model_rr_scale": "log", "gamma": 2.0}
# Round 54: the 10-beat local average back among the RR inputs (dropped in round 2 on one seed of 8 epochs),
# for both networks of the product's pair.
LOCAL10 = {"diagnostic": dl.RR_FEATURES["diagnostic"] + ("local", "pre/local", "post/local", "local/long")}
CONFIGS["gamma2_rr_log_local10"] = {"rr": LOCAL10, "model_rr_scale": "log", "gamma": 2.0}
CONFIGS["gamma2_pool5_log_local10"] = {"rr": LOCAL10, "model_pool": 5, "model_rr_scale": "log", "gamma": 2.0}
# Round 55: the second network's CNN averaged over seven spans instead of five (the CNN's last feature map is 35
# samples long; ONNX exports an adaptive average only over spans that divide it: 5, 7 or 35).
CONFIGS["gamma2_pool7_log"] = {"model_pool": 7, "model_rr_scale": "log", "gamma": 2.0}
# Preprocessing values a config may change (data_loader.load_beats' keywords), with the product's values: each
# job passes its config's, and load_beats caches that config's beats under their own key.
DATA_DEFAULTS = {"long_seconds": dl.LONG_SECONDS, "slow_quantile": dl.SLOW_QUANTILE, "template_beats": dl.TEMPLATE_BEATS}
# The template from on-time beats only (template_on_time: pre-RR >= 0.7 or 0.8 x 'slow', variants.on_time;
# the product's: every beat):
# where most beats are premature, the last 32 beats' median is a premature beat. With focal gamma 2
# as the product's diagnostic mode trains (real-time mode keeps gamma 1: "ontime*").
for r in (70, 80):
    CONFIGS[f"ontime{r}"] = {"template_on_time": r / 100}
    CONFIGS[f"gamma2_ontime{r}"] = {"template_on_time": r / 100, "gamma": 2.0}
# The record's other lead (V1 in most records; V4 in 124, V5 in 114) as two more CNN channels: its
# beat window and its template, computed as the first lead's.
CONFIGS["lead2"] = {"lead2": True, "model_leads": 2}
# The rhythm's irregularity as one more RR input: the coefficient of variation of the last
# LOCAL_BEATS intervals before the beat's own (past beats only, both modes). Atrial fibrillation and
# sinus arrhythmia (N) are irregular throughout; a premature beat in a regular rhythm is not.
CONFIGS["rr_irregularity"] = {"rr_irregularity": True}
# The beat's size against its patient's recent beats, as one more input of the dense branch (round 26):
# log(std of the band-passed window / median std of the last TEMPLATE_BEATS windows), past beats only
# in both modes. Each window is z-scored, so neither the CNN nor the template sees how large a beat is;
# a V beat is often larger than its patient's others, an artefact far larger or smaller.
CONFIGS["gamma2_amplitude"] = {"amplitude": True, "gamma": 2.0}
# Both templates (round 21): the product's (the last 32 beats) and the on-time beats' one (pre-RR >=
# 0.8 x 'slow'), the second as a second "lead" of the same MLII beat: the CNN sees the beat, its
# difference from each template (and the beat twice).
CONFIGS["gamma2_two_templates"] = {"on_time_template": 0.8, "model_leads": 2, "gamma": 2.0}
# Ratios only: the RR inputs without the four absolute intervals (pre, post or prev, long, slow), so
# the network sees a beat's timing only relative to its patient's own rhythm, never the heart rate.
CONFIGS["rr_ratios_only"] = {"rr": {
    mode: tuple(filter(is_ratio, names)) for mode, names in dl.RR_FEATURES.items()}}
# Heart-rate augmentation (variants.LabTrainConfig.rr_rate): each training beat's RR inputs in seconds
# scaled by one random factor in [1/1.3, 1.3] (or [1/1.5, 1.5]), the ratios left alone; off in the product.
for r in (30, 50):
    CONFIGS[f"rr_rate{r}"] = {"rr_rate": r / 100}
# Offsets added to the S log-probability before the argmax: a decision rule the product can fold
# into the classifier's bias. Every job scores each one, so the search costs no extra training.
S_OFFSETS = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def _exit_with_parent() -> None:
    """Worker initializer: end this worker when the search is killed (a killed parent leaves its
    spawned workers running their job to the end otherwise)."""
    import os
    import threading

    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def second_lead(data_dir, record: str, mode: str, peaks: np.ndarray,
                template_beats: int = dl.TEMPLATE_BEATS) -> np.ndarray:
    """The beat windows and templates (beats, 2, WINDOW) of a record's lead other than dl.LEAD."""
    import wfdb

    path = str(Path(data_dir) / record)
    other = [name for name in wfdb.rdheader(path).sig_name if name != dl.LEAD][0]
    x, _ = dl.read_record(path, other)
    return dl.with_templates(dl.beat_windows(dl.bandpass(x, dl.FS, mode), peaks), template_beats)


def relative_amplitude(data_dir, record: str, mode: str, peaks: np.ndarray,
                       template_beats: int = dl.TEMPLATE_BEATS) -> np.ndarray:
    """(beats, 1): log of each beat window's std (band-passed MLII, before the z-score) over the
    median std of the last template_beats windows (dl.beat_templates' rule; the first beat: 0)."""
    x, _ = dl.read_record(str(Path(data_dir) / record))
    std = dl.cut_windows(dl.bandpass(x, dl.FS, mode), peaks).std(axis=1)[:, None].astype(np.float32)
    return np.log((std + 1e-6) / (dl.beat_templates(std, template_beats) + 1e-6)).astype(np.float32)


def rr_irregularity(r_peaks: np.ndarray) -> np.ndarray:
    """(beats, 1): std / mean of the RR intervals before each beat's own, the last dl.LOCAL_BEATS
    of them (0 while fewer than two are known)."""
    t = np.asarray(r_peaks, dtype=np.float64) / dl.FS
    prev = np.concatenate([[np.nan, np.nan], np.diff(t)])[:len(t)]  # the interval before the beat's own
    start = np.maximum(np.arange(len(t)) - dl.LOCAL_BEATS + 1, 0)
    mean, sq = dl._window_mean(prev, start), dl._window_mean(prev ** 2, start)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.sqrt(np.maximum(sq - mean ** 2, 0.0)) / mean
    return np.where(np.isnan(cv), 0.0, cv).astype(np.float32)[:, None]


def per_record(b, fn) -> np.ndarray:
    """fn(record, its rows) for each record of b, in b's order, concatenated."""
    return np.concatenate([fn(r, b.record == r) for r in dict.fromkeys(b.record)])


SUMMARY = Path(__file__).resolve().parent / "results" / "cv.md"  # written by hand, round by round


def predictions_path(directory, mode: str, config: str, seed, fold) -> Path:
    """Where --save-predictions keeps one job's held-out log-probabilities (.npz; --save-models: its network, .pt)."""
    return Path(directory) / f"{mode}-{config}-seed{seed}-fold{fold}.npz"


def read_predictions(directory, mode: str, config: str) -> dict:
    """{seed: [one dict per held-out fold, in fold order: logp, labels, record, sample]} of the jobs
    --save-predictions kept for mode and config; empty if there are none."""
    runs = {}
    for f in sorted(Path(directory).glob(predictions_path("", mode, config, "*", "*").name)):
        seed = int(f.stem.split("-seed")[1].split("-")[0])
        with np.load(f) as z:
            runs.setdefault(seed, []).append({k: z[k] for k in z.files})
    return runs


def read_runs(directory, runs: str) -> dict:
    """{"mode/config": read_predictions(directory, mode, config)} for each comma-separated mode/config
    of runs; ValueError, naming the fix, for one with no predictions kept."""
    out = {}
    for run in runs.split(","):
        mode, _, config = run.partition("/")
        out[run] = read_predictions(directory, mode, config)
        if not out[run]:
            raise ValueError(f"no predictions for {run} in {directory}; run lab/cv.py with "
                             f"--configs {config} --modes {mode} --save-predictions {directory} first")
    return out


def saved_jobs(models_dir, runs: str, seeds: int) -> list[tuple]:
    """(mode, config, fold, seed, network file) of each job --save-models kept for the comma-separated
    mode/config runs, in mode, fold, seed order; FileNotFoundError naming the fix if any is missing
    (checked before any is scored)."""
    jobs = []
    for run in runs.split(","):
        mode, config = run.split("/")
        for fold in range(len(dl.DS1_FOLDS)):
            for seed in range(seeds):
                path = predictions_path(models_dir, mode, config, seed, fold).with_suffix(".pt")
                if not path.exists():
                    raise FileNotFoundError(f"{path} not found; run lab/cv.py --configs {config} --modes {mode} "
                                            f"--seeds {seeds} --save-models {models_dir} first")
                jobs.append((mode, config, fold, seed, path))
    return jobs


def load_saved_model(path):
    """A network --save-models kept, in eval mode (files from before round 41 did not record the RR
    branch's width unless their config set it: theirs is model.LEGACY_RR_HIDDEN)."""
    import torch

    from model import saved_kwargs
    from variants import LabNet

    saved = torch.load(path, weights_only=False)
    model = LabNet(n_rr=saved["n_rr"], **saved_kwargs(saved["model_kw"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def job_network(mode: str, n_rr: int, model_kw: dict):
    """A job's network: the product's for its mode (model.design), with its config's model_* changes
    (variants.LabNet: the product's DualBranchNet when they are the product's options)."""
    from model import design
    from variants import LabNet

    return LabNet(n_rr=n_rr, **{**design(mode), **model_kw})


def job_settings(config: str, mode: str, epochs: int, seed: int = 0, device: str = "cpu") -> dict:
    """A config sorted by where each of its changes acts: data (load_beats' keywords), template_on_time, rr_names
    (None: the mode's), the extra inputs (drop_validation, lead2, rr_irregularity, amplitude, on_time_template),
    model_kw (job_network's) and cfg (a variants.LabTrainConfig)."""
    from variants import LabTrainConfig

    over = dict(CONFIGS[config])
    out = {"rr_names": over.pop("rr", {}).get(mode),
           "data": {key: over.pop(key, value) for key, value in DATA_DEFAULTS.items()},
           "template_on_time": over.pop("template_on_time", 0.0),
           **{key: over.pop(key, default) for key, default in (
               ("drop_validation", False), ("lead2", False), ("rr_irregularity", False), ("amplitude", False),
               ("on_time_template", None))},
           "model_kw": {k[6:]: over.pop(k) for k in list(over) if k.startswith("model_")}}
    epochs *= over.pop("epochs_factor", 1)
    out["cfg"] = replace(LabTrainConfig(), epochs=epochs, seed=seed, device=device, **over)
    return out


def run_job(job: dict) -> dict:
    import torch

    from train import predict_proba, seed_everything
    from variants import fit, on_time, on_time_templates

    torch.set_num_threads(job["threads"])
    mode = job["mode"]
    settings = job_settings(job["config"], mode, job["epochs"], job["seed"], job["device"])
    data, rr_names, model_kw, cfg = settings["data"], settings["rr_names"], settings["model_kw"], settings["cfg"]
    held = dl.DS1_FOLDS[job["fold"]]
    # --select-checkpoint (main.py --validate's rule): the product's validation records outside the
    # held-out fold leave the job's training set and choose its checkpoint; drop_validation_records
    # only leaves them out of training.
    val_recs = [r for r in dl.VALIDATION if r not in held] if job.get("select") or settings["drop_validation"] else []
    train_recs = [r for r in dl.DS1 if r not in held and r not in val_recs]
    load = lambda recs: dl.load_beats(job["data_dir"], recs, mode, job["cache_dir"], offline=True,  # noqa: E731
                                      progress=False, **data)
    train, test = load(train_recs), load(held)
    val = load(val_recs) if val_recs and job.get("select") else None
    sets = [b for b in (train, test, val) if b is not None]
    rhythm = {"long_seconds": data["long_seconds"], "slow_quantile": data["slow_quantile"]}

    def templates_of_on_time_beats(b, threshold):
        return per_record(b, lambda r, rows: on_time_templates(
            b.x[rows, 0], on_time(b.sample[rows], threshold, **rhythm), data["template_beats"]))

    if settings["template_on_time"] > 0:  # the template channel made of on-time beats only
        for b in sets:
            b.x = np.stack([b.x[:, 0], templates_of_on_time_beats(b, settings["template_on_time"])], axis=1)
    if rr_names:  # another feature set: recompute it from the R-peaks, record by record
        for b in sets:
            b.rr = per_record(b, lambda r, rows: dl.rr_features(b.sample[rows], mode=mode, names=rr_names, **rhythm))
    if settings["rr_irregularity"]:
        for b in sets:
            b.rr = np.concatenate([b.rr, per_record(b, lambda r, rows: rr_irregularity(b.sample[rows]))], axis=1)
    if settings["amplitude"]:
        for b in sets:
            b.rr = np.concatenate([b.rr, per_record(b, lambda r, rows: relative_amplitude(
                job["data_dir"], r, mode, b.sample[rows], data["template_beats"]))], axis=1)
    if settings["on_time_template"] is not None:  # a second template channel pair: the on-time beats'
        for b in sets:
            b.x = np.concatenate([b.x, np.stack([b.x[:, 0], templates_of_on_time_beats(
                b, settings["on_time_template"])], axis=1)], axis=1)
    if settings["lead2"]:
        for b in sets:
            other = per_record(b, lambda r, rows: second_lead(job["data_dir"], r, mode, b.sample[rows],
                                                              data["template_beats"]))
            b.x = np.concatenate([b.x, other], axis=1)
    if not model_kw.get("template", True):  # the beat alone: (beats, 1, WINDOW)
        for b in sets:
            b.x = b.x[:, :1]
    t0 = time.time()
    seed_everything(cfg.seed)  # the initial weights too, as main.py: same seed, same model
    model, _, best_epoch = fit(job_network(mode, train.rr.shape[1], model_kw), train, val, cfg, progress=False,
                               rr_names=rr_names or dl.RR_FEATURES[mode])
    logp = np.log(np.maximum(predict_proba(model, test.x, test.rr), 1e-12))
    s_col = dl.CLASSES.index("S")
    by_offset = {}
    for off in S_OFFSETS:
        shifted = logp.copy()
        shifted[:, s_col] += off
        by_offset[str(off)] = confusion(test.y, shifted.argmax(1)).tolist()
    if job.get("save_models"):  # the network itself, for rules that act inside it (lab/bn_adapt.py)
        import torch

        out = predictions_path(job["save_models"], mode, job["config"], job["seed"], job["fold"]).with_suffix(".pt")
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "n_rr": train.rr.shape[1],
                    "model_kw": {"rr_hidden": model.rr_hidden, "rr_scale": model.rr_scale, **model_kw}}, out)
    if job.get("save_predictions"):  # the held-out beats' log-probabilities, for rules scored afterwards
        out = predictions_path(job["save_predictions"], mode, job["config"], job["seed"], job["fold"])
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, logp=logp.astype(np.float32), labels=test.y, record=test.record,
                            sample=test.sample)
    return {**{k: job[k] for k in ("config", "mode", "fold", "seed")}, "seconds": time.time() - t0,
            "validation_records": val_recs, "best_epoch": best_epoch,
            "confusion": by_offset["0.0"], "s_offset_confusions": by_offset,
            "logp": logp.astype(np.float32), "labels": test.y}  # kept out of the JSON


def summarise(jobs: list[dict], confusion_of=lambda j: j["confusion"]) -> dict:
    """Per mode/config: confusions pooled over folds seed by seed, metrics averaged over seeds."""
    out = {}
    for j in jobs:
        key = f"{j['mode']}/{j['config']}"
        out.setdefault(key, {}).setdefault(j["seed"], np.zeros((5, 5), int))
        out[key][j["seed"]] += np.array(confusion_of(j))
    summary = {}
    for key, by_seed in out.items():
        seeds = sorted(by_seed)
        ms = [metrics(by_seed[s]) for s in seeds]
        summary[key] = {
            "seeds": len(ms),
            **{f"{c}_{k}": float(np.mean([m["per_class"][c][k] for m in ms]))
               for c in ("N", "S", "V") for k in ("se", "ppv", "f1")},
            "macro_f1_nsv": float(np.mean([m["macro_f1_nsv"] for m in ms])),
            "macro_f1_nsv_std": float(np.std([m["macro_f1_nsv"] for m in ms])),
            "macro_f1_nsv_by_seed": {s: float(m["macro_f1_nsv"]) for s, m in zip(seeds, ms)},
        }
    return summary


def ensemble_jobs(done: list[dict]) -> list[dict]:
    """Seed ensembles scored from the jobs' held-out log-probabilities, at no extra training.

    For each mode/config and each ensemble size k from 2 to its seeds, every k-subset of the seeds
    whose four folds are done is one pseudo-job per fold ("config x k seeds", its "seed" the subset):
    the argmax of the members' mean log-probabilities (the argmax of their mean logits, as
    model.SeedEnsemble decides). summarise() then averages over the subsets.
    """
    by_key = {}
    for j in done:
        by_key.setdefault((j["mode"], j["config"]), {}).setdefault(j["seed"], {})[j["fold"]] = j
    out = []
    for (mode, config), by_seed in by_key.items():
        seeds = sorted(s for s, folds in by_seed.items() if len(folds) == len(dl.DS1_FOLDS))
        for k in range(2, len(seeds) + 1):
            for members in itertools.combinations(seeds, k):
                for fold in range(len(dl.DS1_FOLDS)):
                    jobs = [by_seed[s][fold] for s in members]
                    logp = np.mean([j["logp"] for j in jobs], axis=0)
                    out.append({"mode": mode, "config": f"{config} x{k} seeds", "fold": fold,
                                "seed": "+".join(map(str, members)),
                                "confusion": confusion(jobs[0]["labels"], logp.argmax(1)).tolist()})
    return out


def offset_summary(jobs: list[dict]) -> dict:
    """Per mode/config and S log-probability offset: summarise() of the jobs' confusions at that offset."""
    jobs = [j for j in jobs if "s_offset_confusions" in j]
    out = {}
    for off in {off for j in jobs for off in j["s_offset_confusions"]}:
        for key, m in summarise(jobs, lambda j: j["s_offset_confusions"][off]).items():
            out.setdefault(key, {})[off] = m
    return out


def offset_table(offsets: dict) -> str:
    rows = ["| mode / config | S offset | S Se | S +P | S F1 | macro-F1 (N,S,V) |", "|---|---|---|---|---|---|"]
    for key, offs in sorted(offsets.items()):
        best = max(offs, key=lambda o: offs[o]["S_f1"])
        for off, m in sorted(offs.items(), key=lambda kv: float(kv[0])):
            mark = " (best S F1)" if off == best else ""
            rows.append(f"| {key} | {float(off):+.1f}{mark} | {m['S_se']:.3f} | {m['S_ppv']:.3f} | "
                        f"{m['S_f1']:.3f} | {m['macro_f1_nsv']:.3f} |")
    return "\n".join(rows)


def table(summary: dict) -> str:
    rows = ["| mode / config | seeds | N F1 | S Se | S +P | S F1 | V Se | V +P | V F1 | macro-F1 (N,S,V) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in sorted(summary.items()):
        rows.append(f"| {key} | {s['seeds']} | {s['N_f1']:.3f} | {s['S_se']:.3f} | {s['S_ppv']:.3f} | "
                    f"{s['S_f1']:.3f} | {s['V_se']:.3f} | {s['V_ppv']:.3f} | {s['V_f1']:.3f} | "
                    f"{s['macro_f1_nsv']:.3f} ± {s['macro_f1_nsv_std']:.3f} |")
    return "\n".join(rows)


def write_results(args, done, jobs, configs, wall) -> dict:
    """Rewritten after every job, so an interrupted search keeps what it finished."""
    ensembles = summarise(ensemble_jobs(done))
    summary, offsets = summarise(done), offset_summary(done)
    kept = [{k: v for k, v in j.items() if k not in ("logp", "labels")} for j in done]
    write_json(Path(args.out).with_suffix(".json"), {
        "summary": summary, "s_offsets": offsets, "ensembles": ensembles,
        "jobs": sorted(kept, key=lambda j: (j["mode"], j["config"], j["seed"], j["fold"])),
        "complete": len(done) == len(jobs), "wall_seconds": wall, "folds": dl.DS1_FOLDS,
        "configs": {c: repr(CONFIGS[c]) for c in configs}, "epochs": jobs[0]["epochs"],
        "device": args.device, "select_checkpoint": args.select_checkpoint, "command": " ".join(sys.argv)})
    write_text(Path(args.out).with_suffix(".md"),
               f"# DS1 patient-wise cross-validation\n\nCommand: `python {' '.join(sys.argv)}`\n\n"
               f"Folds (whole records): {'; '.join(' '.join(f) for f in dl.DS1_FOLDS)}. "
               f"Each job trains on three folds and scores the fourth; confusions are pooled over the "
               f"4 held-out folds, then averaged over seeds. Base epochs {jobs[0]['epochs']}. "
               + ("Checkpoint: the epoch with the best macro-F1 (N,S,V) on the product's validation records "
                  "outside the held-out fold, which leave the training set (as main.py). " if args.select_checkpoint
                  else "Checkpoint: the last epoch's averaged weights. ")
               + f"{len(done)}/{len(jobs)} jobs, wall time {wall / 60:.1f} min on {args.device}.\n\n"
               + table(summary) + "\n\nConfigs (changes from base):\n\n"
               + "\n".join(f"- `{c}`: {CONFIGS[c] or 'product defaults'}" for c in configs) + "\n"
               + (f"\n## Seed ensembles\n\nThe same jobs, k seeds' models averaged (mean log-probabilities, "
                  f"then the argmax); 'seeds' counts the k-subsets of the seeds run, and the ± is over them:"
                  f"\n\n{table(ensembles)}\n" if ensembles else "")
               + (f"\n## S decision offset\n\nThe same jobs, with an offset added to the S log-probability "
                  f"before the argmax (0 = the plain argmax above):\n\n{offset_table(offsets)}\n" if offsets else ""))
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--configs", default="base", help=f"comma-separated, from: {', '.join(CONFIGS)}")
    p.add_argument("--modes", default="diagnostic,realtime")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds run: first-seed ... first-seed+seeds-1 (more seeds for a config run before)")
    p.add_argument("--epochs", type=int, default=None, help="default: the product's default")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    p.add_argument("--device", default="cpu")
    p.add_argument("--select-checkpoint", action="store_true",
                   help="choose each job's checkpoint on the product's validation records (220, 223, 124) "
                        "outside its held-out fold, as main.py does; they leave its training set")
    p.add_argument("--out", default="lab/results/cv_run",
                   help="writes OUT.md and OUT.json (not lab/results/cv: lab/results/cv.md is the rounds' written record)")
    p.add_argument("--save-predictions", metavar="DIR", default=None,
                   help="also write each job's held-out log-probabilities, labels, records and R-peaks to "
                        "DIR/<mode>-<config>-seed<s>-fold<f>.npz (for decision rules scored afterwards)")
    p.add_argument("--save-models", metavar="DIR", default=None,
                   help="also write each job's trained network to DIR/<mode>-<config>-seed<s>-fold<f>.pt "
                        "(for rules that act inside it, e.g. lab/bn_adapt.py)")
    args = p.parse_args(argv)
    from train import TrainConfig

    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        print(f"error: unknown config {', '.join(unknown)}; choose from {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    if args.seeds < 1 or args.first_seed < 0:
        print(f"error: --seeds must be at least 1 and --first-seed at least 0, got {args.seeds} and "
              f"{args.first_seed}", file=sys.stderr)
        return 2
    if Path(args.out).with_suffix(".md").resolve() == SUMMARY.resolve():
        print(f"error: --out {args.out} would overwrite {SUMMARY}, the written record of every round; "
              f"name this run, e.g. --out lab/results/cv_round34", file=sys.stderr)
        return 2
    modes = args.modes.split(",")
    t0 = time.time()
    try:
        dl.ensure_records(args.data_dir, dl.DS1, offline=args.offline)
        for mode in modes:  # fill the cache once, before the workers read it
            dl.load_beats(args.data_dir, dl.DS1, mode, args.cache_dir, offline=True)
    except dl.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    jobs = [dict(config=c, mode=m, fold=f, seed=s, data_dir=args.data_dir, cache_dir=args.cache_dir,
                 epochs=args.epochs or TrainConfig().epochs, device=args.device, threads=args.threads,
                 select=args.select_checkpoint, save_predictions=args.save_predictions,
                 save_models=args.save_models)
            for m in modes for c in configs for s in range(args.first_seed, args.first_seed + args.seeds)
            for f in range(len(dl.DS1_FOLDS))]
    done = []
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_exit_with_parent) as pool:
        for fut in as_completed([pool.submit(run_job, j) for j in jobs]):
            r = fut.result()
            done.append(r)
            print(f"{r['mode']}/{r['config']} fold {r['fold']} seed {r['seed']}: {r['seconds']:.0f} s", flush=True)
            summary = write_results(args, done, jobs, configs, time.time() - t0)
    wall = time.time() - t0
    summary = write_results(args, done, jobs, configs, wall)
    print(table(summary))
    print(f"wall time {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
