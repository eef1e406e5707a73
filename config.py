"""The product's settings, stage by stage: every value chosen for it, with why. The stages import them from here;
main.py's training flags take their defaults from here. lab/README.md tells how each was chosen (DS1
cross-validation, never DS2). Facts of the data, not chosen (MIT-BIH's rate and lead, the AAMI
classes, the DS1/DS2 split), stay beside the data: mitdb.py and data_loader.py."""

# --------------------------------------------------------------------------- beats (data_loader.py)

WINDOW_BEFORE = 130  # samples before the R-peak (361 ms)
WINDOW_AFTER = 150  # samples from the R-peak on (417 ms): the only look-ahead in real-time mode
BANDPASS_HZ = (0.5, 50.0)  # Hz: baseline wander below, muscle noise and mains hum above
FILTER_ORDER = 3  # Butterworth order per edge; sosfiltfilt squares the magnitude
TEMPLATE_BEATS = 32  # the patient's template beat: median of the last TEMPLATE_BEATS beat windows

# --------------------------------------------------------------------------- RR features (data_loader.py)

DEFAULT_RR = 0.8  # s, stands in for an RR interval or average not known (before the first beat, after the last)
LOCAL_BEATS = 10  # RR intervals in the local average
LONG_SECONDS = 300.0  # s, span of the long running average
SLOW_QUANTILE = 0.95  # 'slow': this quantile of the RR intervals of the last LONG_SECONDS
RR_FEATURES = {
    # Diagnostic mode may use the next beat (post-RR): one beat of latency.
    # 'slow' (a high quantile of the last 5 minutes' intervals) keeps premature beats premature in
    # a patient whose beats are mostly premature, where the mean follows them (it and its quantile
    # chosen by DS1 cross-validation, lab/README.md).
    "diagnostic": ("pre", "post", "long", "pre/long", "post/long", "post/pre", "slow", "pre/slow", "post/slow"),
    # Real-time mode: only beats at or before the current one.
    "realtime": ("pre", "prev", "long", "pre/long", "prev/long", "pre/prev", "slow", "pre/slow", "prev/slow"),
}

# --------------------------------------------------------------------------- network (model.py)

CHANNELS = (16, 32, 48)  # feature maps of each convolution block, in order (a fourth entry adds a fourth block)
KERNELS = (7, 5, 5, 5)  # kernel size of each convolution block, in order
RR_HIDDEN = 128  # units per layer of the RR branch
HIDDEN = 64  # units of the head's hidden layer, over the CNN's and the RR branch's features
DROPOUT = 0.3  # before each of the head's layers, in training
# The product's networks by mode: the design of each member of its ensemble, in turn (member i takes
# DESIGNS[mode][i % len]). Diagnostic: a network taking the logarithms of its RR inputs, which finds S beats,
# beside one also taking logarithms whose CNN averages over seven spans of the window, which keeps V's false
# alarms down (ONNX exports only spans that divide the CNN's 35-sample map: 5, 7, 35). Real-time: one network
# on raw RR inputs.
DESIGNS = {"diagnostic": ({"rr_scale": "log"}, {"rr_scale": "log", "pool": 7}),
           "realtime": ({"rr_scale": "raw"},)}
# Networks per model, by mode (--ensemble), their logits averaged. A third diagnostic network would miss the
# edge model's 20,000 beats/s; a second real-time one gained too little for the stream's speed.
ENSEMBLE = {"diagnostic": 2, "realtime": 1}

# --------------------------------------------------------------------------- training (train.py; main.py's flags)

EPOCHS = 12  # the one-cycle schedule's length; the averaged weights of the last epoch are kept
BATCH_SIZE = 256  # beats per training step
LR = 3e-3  # peak learning rate of the one-cycle schedule
WEIGHT_DECAY = 1e-4  # Adam's L2 penalty
GAMMA = {"diagnostic": 2.0, "realtime": 1.0}  # focal loss focusing parameter, by mode (--gamma)
# Per-class focal weights (CLASSES order). Q is weighted down: its few DS1 examples cost N beats when learned
# hard. F is not: F beats taken for V are V false alarms.
ALPHA = (1.0, 1.0, 1.0, 1.0, 0.2)
BALANCE = 0.5  # sample class c with weight count_c^-balance (0: natural, 1: balanced)
AUGMENT = True  # gain, baseline wander, noise and small shifts: what differs between patients and recordings
EMA = 0.998  # decay of the moving average of weights, after a plain-mean warm-up (0: off)
# Added to the S logit (folded into the classifier's bias after training): a decision rule that trades S positive
# predictivity for sensitivity. 0: none.
S_OFFSET = 0.0
SEED = 0  # same seed, same result on the same CPU model

# --------------------------------------------------------------------------- adapting to a patient (adapt.py)

# Chosen by simulating the patient-adaptive protocol on held-out DS1 patients (lab/adapt_cv.py, lab/README.md):
# a weak pull (0.01) beat 0.1 and 1 with the first five minutes' labels and with 10 or more chosen beats.
HEAD_L2 = 0.01  # pull of the head's weights towards the trained ones (sum of squares), against the labels' loss
CLASS_BALANCE = 0.5  # a confirmed beat of class c weighs count_c^-CLASS_BALANCE: a rare class is not outvoted
SPREAD = 0.0  # a confirmed beat's label also given (at SPREAD_WEIGHT) to unconfirmed beats near it; 0: off (DS1:
SPREAD_WEIGHT = 0.2  # no gain)
FIT_STEPS = 60  # L-BFGS iterations
