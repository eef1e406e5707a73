"""Inter-patient evaluation (DS1 -> DS2, AAMI EC57 classes): per-class Se, +P, FPR, F1, confusion matrix, report."""
from __future__ import annotations

import numpy as np

from data_loader import CLASSES
from outputs import atomic_path, write_text

NSV = ("N", "S", "V")


def confusion(y_true, y_pred) -> np.ndarray:
    """5x5 counts, rows = reference class, columns = predicted class (CLASSES order)."""
    k = len(CLASSES)
    return np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(k, k)


def detection_confusion(ref_y, pred, ref_idx, det_idx) -> np.ndarray:
    """6x6 counts for beats found by a detector: rows reference class + "no beat" (extra
    detections), columns predicted class + "missed" (reference beats with no detection).

    ref_y: class of every reference beat; pred: class of every detected beat; ref_idx, det_idx:
    the matched pairs (detect.match_beats). metrics() reads it as it reads a 5x5 matrix: a missed
    beat is a false negative of its class, an extra detection a false positive of its class.
    """
    k = len(CLASSES)
    ref_y, pred = np.asarray(ref_y), np.asarray(pred)
    cm = np.zeros((k + 1, k + 1), dtype=np.int64)
    np.add.at(cm, (ref_y[ref_idx], pred[det_idx]), 1)
    missed = np.ones(len(ref_y), bool)
    missed[ref_idx] = False
    np.add.at(cm, (ref_y[missed], k), 1)
    extra = np.ones(len(pred), bool)
    extra[det_idx] = False
    np.add.at(cm, (k, pred[extra]), 1)
    return cm


def _ratio(a, b) -> float:
    return float(a / b) if b else 0.0


def f1_score(se: float, ppv: float) -> float:
    """Harmonic mean of sensitivity and positive predictivity (0 when both are 0)."""
    return _ratio(2 * se * ppv, se + ppv)


def metrics(cm: np.ndarray) -> dict:
    """Per-class Se, +P, FPR, F1 and support; overall accuracy; macro-F1 over N,S,V and all five."""
    cm = np.asarray(cm)
    total = cm.sum()
    per = {}
    for i, c in enumerate(CLASSES):
        tp = cm[i, i]
        fn = cm[i].sum() - tp
        fp = cm[:, i].sum() - tp
        tn = total - tp - fn - fp
        se, ppv = _ratio(tp, tp + fn), _ratio(tp, tp + fp)
        per[c] = dict(se=se, ppv=ppv, fpr=_ratio(fp, fp + tn), f1=f1_score(se, ppv),
                      support=int(cm[i].sum()))
    return dict(per_class=per, accuracy=_ratio(np.trace(cm), total),
                macro_f1_nsv=float(np.mean([per[c]["f1"] for c in NSV])),
                macro_f1_all=float(np.mean([per[c]["f1"] for c in CLASSES])),
                confusion=cm.tolist(), beats=int(total))


def classification_report(y_true, y_pred) -> str:
    from sklearn.metrics import classification_report as sk_report

    return sk_report(y_true, y_pred, labels=list(range(len(CLASSES))), target_names=list(CLASSES),
                     digits=4, zero_division=0)


def metrics_table(named: dict[str, dict]) -> str:
    """Markdown table of Se / +P / F1 per class, one row per model."""
    head = "| model | " + " | ".join(f"{c} Se | {c} +P | {c} F1" for c in CLASSES) + \
           " | acc | macro-F1 (N,S,V) |"
    rows = [head, "|" + "---|" * (3 * len(CLASSES) + 3)]
    for name, m in named.items():
        cells = " | ".join(f"{m['per_class'][c]['se']:.3f} | {m['per_class'][c]['ppv']:.3f} | "
                           f"{m['per_class'][c]['f1']:.3f}" for c in CLASSES)
        rows.append(f"| {name} | {cells} | {m['accuracy']:.4f} | {m['macro_f1_nsv']:.4f} |")
    return "\n".join(rows)


def confusion_table(cm) -> str:
    rows = ["| ref \\ pred | " + " | ".join(CLASSES) + " |", "|---" * (len(CLASSES) + 1) + "|"]
    rows += [f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(CLASSES, np.asarray(cm))]
    return "\n".join(rows)


def plot_confusion(cm, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.3))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="fraction of reference class")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def plot_history(history: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    validated = "val_loss" in history[0]
    fig, axes = plt.subplots(1, 2 if validated else 1, figsize=(9 if validated else 4.5, 3.5), squeeze=False)
    members = sorted({h.get("member", 0) for h in history})
    a = axes[0, 0]
    for i in members:  # an ensemble's networks one by one, each with its own line
        hs = [h for h in history if h.get("member", 0) == i]
        ep, tag = [h["epoch"] for h in hs], (f", network {i + 1}" if len(members) > 1 else "")
        ls = ("-", "--", ":", "-.")[i % 4]  # a line style per network, a colour per curve
        a.plot(ep, [h["train_loss"] for h in hs], ls, label="train" + tag, color="C0")
        if validated:
            a.plot(ep, [h["val_loss"] for h in hs], ls, label="validation patients" + tag, color="C1")
            b = axes[0, 1]
            b.plot(ep, [h["val_macro_f1_nsv"] for h in hs], ls, label="macro-F1 (N,S,V)" + tag, color="k")
            for c, colour in (("S", "C2"), ("V", "C3")):
                b.plot(ep, [h["val_f1"][c] for h in hs], ls, label=f"{c} F1" + tag, color=colour, alpha=0.7)
    a.set_xlabel("epoch")
    a.set_ylabel("focal loss")
    a.legend(fontsize="small")
    if validated:
        axes[0, 1].set_xlabel("epoch")
        axes[0, 1].set_ylabel("validation F1")
        axes[0, 1].legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write_report(path, title: str, config: dict, results: dict, history: list, extra: str = "") -> None:
    """Human-readable report: metrics of every model, confusion matrix, sklearn report."""
    validated = bool(history) and "val_loss" in history[0]
    lines = [f"# {title}", "", "Inter-patient evaluation on DS2 (de Chazal et al. 2004; AAMI EC57 classes): "
             "trained on DS1, "
             + ("checkpoint chosen on held-out DS1 patients." if validated
                else "last averaged weights kept (no checkpoint choice)."), "",
             "## Metrics on DS2", "", metrics_table({k: v["metrics"] for k, v in results.items()}), ""]
    for name, r in results.items():
        lines += [f"## {name}: confusion matrix", "", confusion_table(r["metrics"]["confusion"]), "",
                  "```", r["report"].rstrip(), "```", ""]
    if extra:
        lines += [extra, ""]
    cols = {"train_loss": "train loss", **({"val_loss": "val loss", "val_macro_f1_nsv": "val macro-F1 (N,S,V)"}
                                           if validated else {})}
    ensemble = any(h.get("member", 0) for h in history)  # one row per network and epoch
    first = "| network (seed) | epoch | " if ensemble else "| epoch | "
    lines += ["## Training", "", first + " | ".join(cols.values()) + " |", "|---" * (len(cols) + 1 + ensemble) + "|"]
    lines += [(f"| {h['member'] + 1} ({h['seed']}) " if ensemble else "") + f"| {h['epoch']} | "
              + " | ".join(f"{h[k]:.4f}" for k in cols) + " |" for h in history]
    lines += ["", "## Configuration", "", "```", *(f"{k}: {v}" for k, v in config.items()), "```", ""]
    write_text(path, "\n".join(lines))
