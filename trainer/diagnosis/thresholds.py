"""Every number the rules compare against, in one place.

The rule table of the docs (docs/diagnosis.md) is generated from these
(trainer.diagnosis.table), so the docs cannot drift from the code.
"""

RATIO_TARGET = 1e-3
RATIO_HIGH = 1e-2  # update ratios above this mean the learning rate is too high
RATIO_LOW = 1e-4  # ... below this, too low (unless the loss has already converged)
SUSTAINED = 0.8  # fraction of the recent measurements that must be past a threshold
RECENT = 0.25  # the recent window: the last quarter of a series (at least 5 points)
CONVERGED_LOSS_FRACTION = 0.3  # a loss below this fraction of its first value has made real progress
OVERFIT_GAP = 0.10  # train - validation accuracy
VAL_LOSS_RISE = 1.05  # ... or the validation loss 5 % above its minimum ...
MEMORISED = 0.99  # ... or the training set learnt by heart, with validation stalled ...
MEMORISED_GAP = 0.20  # ... or this far behind however it still creeps up
UNDERFIT_ACCURACY = 0.80  # both accuracies below this ...
UNDERFIT_GAP = 0.05  # ... and this close together while the run is running; once it has ended, any gap
# short of OVERFIT_GAP: low accuracies that the gap does not call overfitting are underfitting
MIN_EPOCHS_FOR_ACCURACY_RULES = 5
DEAD_WARNING = 0.40  # "with a large learning rate as many as 40% of ReLU units can die"
DEAD_ERROR = 0.90
SATURATED_WARNING = 0.50
COLLAPSED_ACTIVATION_STD = 0.05  # activations all near 0 (too small an initialisation)
VANISHING_RATIO = 5e-2  # gradient norm of the first weight layer / the last one ...
# ... with the first no larger than this times the median layer's: layers whose gradients vanished
# alike scatter by tens of per cent (one deep tanh net: 4.1e-6 to 5.9e-6 under an output layer's 6e-4),
# while activations that collapsed without the gradient vanishing leave the first layer's (whose
# input, the data, did not collapse) above the middle ones' (whose inputs did)
VANISHING_MEDIAN_SLACK = 1.5
EXPLODING_FACTOR = 100.0  # gradient norm grew this many times its first value
# optimizer.zero_grad() forgotten: the share of a gradient carried over from earlier steps
# (trainwatch.watch measures it; 0 to 1e-6 when the gradients are zeroed, 0.5 and more when
# they are summed onto the last step's), above this at most measurements
CARRIED_GRADIENT = 0.1
INITIAL_LOSS_TOLERANCE = 0.5  # relative distance of the first loss from ln(C) (or C - 1)
ADAGRAD_DECAY = 3.0  # Adagrad's update ratio fell this many times while the loss has not converged
STALL_EPOCHS = 10  # best validation accuracy not improved for this many epochs ...
STALL_FRACTION = 0.25  # ... and for this fraction of the epochs so far
# A young run is read with care: optimizers settle in their first steps (Adam's first updates
# are large by design), and the first epochs' accuracies move fast.
YOUNG_STEPS = 200
TRANSIENT_STEPS = 5  # the ratios of the very first updates are not read at all
# while young, the first updates of one layer (often the output) can be large in a healthy run;
# a rate that is too high lifts every layer: each weight tensor's ratio above this
RATIO_HIGH_YOUNG = 3e-2
LOSS_RISE = 1.5  # the loss back above 1.5x its lowest level so far ...
LOSS_RISE_MARGIN = 0.1  # ... and by at least this fraction of its first value: it went up, not just noise
LOSS_ABOVE_START = 1.1  # or a recent loss 10 % above the first: worse than not training
# or a loss that jumped to this many times its first value: steps so large they threw the weights
# off (AdamW 0.3 on a transformer: 1.44, 3.3, 15.9 in its first steps, then stuck at one class
# with update ratios of 1e-5 on weights grown huge); a healthy start never comes near it
LOSS_SPIKE = 4.0
DEAD_RISING = 0.30  # while young: this many dead units, ...
DEAD_RISE = 0.10  # ... this many more than at the first measurement
UNDERFIT_YOUNG_ACCURACY = 0.5  # from 3 epochs: both accuracies below this, ...
UNDERFIT_YOUNG_GAIN = 0.02  # ... and the last epoch gaining less than this
PLATEAU_TOLERANCE = 0.03  # the loss within 3 % of its expected initial value ...
PLATEAU_STEPS = 30  # ... for at least this many steps from the start: stuck at ln(C)
FAST_DROP = 0.5  # the loss below half its first value ...
FAST_DROP_WITHIN = 0.2  # ... within the first fifth of the steps so far, ...
PLATEAU_FLAT = 0.9  # ... then never below 90 % of the lowest level before, over the later half, ...
PLATEAU_BAD = 0.15  # ... whose level is more than 15 % of the first loss: a plateau at a bad value
LINEAR_R2 = 0.9  # the loss on a straight line (R^2 of a linear fit), ...
LINEAR_HALVES = (0.5, 2.0)  # ... falling about as much in the second half as in the first, ...
LINEAR_SLOW = 0.4  # ... and by less than 40 % of its first value so far: a learning rate too low
NOISY_BATCH = 16  # a batch this small or smaller ...
NOISY = 0.45  # ... with the loss scattering by 45 % of its level around its running median (about 0.3 at batch 64)
VAL_STUCK = 0.97  # the validation loss never 3 % below its first value, ...
VAL_STILL = 0.99  # ... lately not even 1 % below it, ...
TRAIN_PROGRESS = 0.97  # ... while the training loss fell more than 3 %
# The first layer's filters (trainer.instrument.filter_roughness: white noise 1, smooth 0): from
# the third epoch on, still this rough means the layer has not moved from its random start.
# Learnt filters read 0.6-0.94 without weight decay, below 0.2 with it (docs/diagnosis.md).
FILTERS_NOISE = 0.98
FILTERS_SMOOTH = 0.3  # below: smooth filters (the run page says so; no rule reads it)
FILTERS_FROM_EPOCH = 2
