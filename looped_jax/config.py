"""The config schema: every key a run may set, its default, and its validation.

Experiment files in `configs/` start from `base_config()` and change values; they never
add keys. `validate` rejects unknown keys and bad values with one sentence (ConfigError)
before anything touches the workdir.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from typing import Any

import ml_collections

from looped_jax import shift_criteria
from looped_jax.errors import ConfigError, check, check_choice
from looped_jax.models.init import SCHEMES as INIT_SCHEMES
from looped_jax.models.layers import swiglu_width

BLOCKS = ("gpt2", "attn_only", "post_norm")
RECURSIONS = ("none", "trm", "hrm")
CROSS_ENTROPIES = ("softmax", "stablemax")
HALT_TARGETS = ("correct", "q_learning")
ATTENTIONS = ("softmax", "linear")
INJECTIONS = ("none", "add", "concat", "internal")
STATE_NORMS = ("none", "rms")
INIT_STATES = ("input", "zeros", "random")
POSITIONS = ("learned", "none", "rope")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
DTYPES = ("float32", "bfloat16", "float64")  # float64: analysis, with JAX_ENABLE_X64=1
PROBE_TARGETS = ("answer", "steps", "w")  # analysis/probes.py
LOSS_ON = ("last", "window", "all", "steps")
RANDOM_LOOPS = ("none", "poisson_lognormal", "uniform")  # = train.loop_sampling.KINDS
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "warmup_constant", "warmup_cosine", "warmup_stable_decay")
MODES = ("train", "eval", "hessian", "generate")
CACHE_STRATEGIES = ("per_loop", "first_loop", "every_k")  # = models.decode.STRATEGIES
EXIT_CRITERIA = ("none", "kl", "residual", "gate")  # = models.decode.EXIT_CRITERIA
HESSIAN_METHODS = ("exact", "lanczos")
# Dict-valued keys whose contents are free-form (checked by their own parsers, not the schema).
FREE_FORM = ("task", "variants", "shift.criterion", "eval.loop_sweep.tasks")


def base_config() -> ml_collections.ConfigDict:
  """All keys with their defaults. Comments say what each one means."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # parameter init
  c.data_seed = 1  # training batches: batch(step) = task.sample(fold_in(key(data_seed), step))
  c.eval_seed = 2  # fixed eval batches; must differ from data_seed (docs/papers.md, "Pitfalls")

  c.task = ml_collections.ConfigDict({"name": "markov"})  # + the task dataclass's own fields

  m = c.model = ml_collections.ConfigDict()
  # gpt2: pre-LN attention + GELU MLP; attn_only: Gong et al.'s toy layer; post_norm: the
  # TRM / HRM block (RMS(x + Attn(x)), RMS(x + SwiGLU(x)), no learned norm scale)
  m.block = "gpt2"
  m.attention = "softmax"  # linear = identity instead of softmax (Gong's theory)
  m.causal = True
  m.d_model = 64
  m.num_heads = 4
  m.mlp_ratio = 4
  m.use_bias = True
  m.pre_norm = True  # attn_only: LayerNorm before attention (gpt2 always pre-norms)
  m.dropout = 0.0
  m.num_layers = 1  # k: distinct layers, applied in order inside one loop
  m.num_loops = 1  # L: how often the k-layer stack is applied (a call argument too)
  # Intra-layer recurrence (Nguyen & Lin, arXiv 2505.01855): loops per distinct layer inside
  # one loop, (r_1, ..., r_k); () = once each. (1,)*k is the k⊗L grid, (L,) with k=1 is 1⊗L.
  m.layer_loops = ()
  # L(n) = max(1, ceil(c * log2 n)) for the task's problem size n (Merrill & Sabharwal's
  # log-depth looping); when c > 0 it replaces num_loops as each run is expanded.
  m.loops_per_log2 = 0.0
  m.injection = "none"  # none | add: f(h + e) (Yang) | concat: f(W[h; e]) | internal (Labovich)
  m.state_norm = "none"  # rms: outer normalisation of the state after every loop (Labovich)
  m.timestep = False  # zero-init per-loop adaLN gates/scales from the loop index (Xu & Sato)
  m.init_state = "input"  # h_0 = e (input), 0 (zeros; Yang) or random (N(0, init_sigma^2))
  m.init_sigma = 1.0  # init_state=random: std of h_0, truncated at +-3 sigma (Geiping)
  m.prelude_layers = 0  # P distinct blocks applied once before the loop (Geiping's prelude)
  m.coda_layers = 0  # C distinct blocks applied once after the loop, before ln_f and head
  m.position = "learned"  # learned (absolute, max_len slots) | none | rope (relative, in attention)
  m.position_in_loop = False  # Yang: add the position embedding inside every loop
  m.norm_in_loop = False  # Yang: apply ln_f at the end of every loop
  m.final_norm = True  # LayerNorm before the head (skipped when norm_in_loop already did it)
  m.layer_norm_eps = 1e-6  # every LayerNorm's epsilon (flax's default; PyTorch's is 1e-5)
  # Initialisation scheme, one initializer per parameter family (models/init.py): gpt2 (every
  # weight N(0, 0.02)) or reference_yang (Yang et al.'s code: PyTorch-default read-in/out).
  # (reference_trm: TinyRecursiveModels' truncated LeCun normal, embedding x sqrt(D)).
  m.init = "gpt2"
  m.head_bias = True  # the read-out Linear has a bias (the TRM / HRM head has none)
  # Recursion over an answer y and a latent z (models/looped.py, `recursion_step`); one loop
  # is then one recursion step: T = outer_cycles cycles of n = inner_loops updates
  # z <- f(z + y + x) and one y <- f(y + z). trm: one shared stack, gradients through the
  # last cycle only (Tiny Recursive Model); hrm: a second stack of high_layers blocks for y,
  # gradients through the last z and y updates only (Hierarchical Reasoning Model).
  m.recursion = "none"  # none | trm | hrm
  m.inner_loops = 6  # n (TRM's L_cycles)
  m.outer_cycles = 3  # T (TRM's H_cycles)
  m.high_layers = 0  # hrm: blocks of the y module; 0 = num_layers
  m.halting = False  # a halting head (q_halt, q_continue) on the answer state; trained by
  # train.supervision_steps, used by the halting evaluation
  # Ouro's learned exit gate (arXiv 2510.25741): lambda_t = sigmoid(w . ln_f(h_t) + b) per
  # position after every loop, trained by train.exit_gate_entropy's objective; generation
  # can exit by it (generate.exit = "gate").
  m.exit_gate = False
  # Parallel Loop Transformer (arXiv 2510.24824; models/plt.py): loop l of token p reads loop
  # l - 1 of token p - 1 (one decoding pass runs all loops of a token), later loops attend to
  # loop 1's keys and values mixed with gated sliding-window attention over plt_window keys.
  m.plt = False
  m.plt_window = 64
  m.max_len = 0  # 0: the task's sequence length
  m.remat = "none"  # rematerialisation policy of one loop body
  m.unroll = 0  # gradient windows of at most this many loops run unrolled (faster, longer compile)
  m.dtype = "float32"  # compute dtype (float32, bfloat16, float64); parameters stay float32

  t = c.train = ml_collections.ConfigDict()
  t.num_steps = 1000
  # Time budget: stop at the first log step once this many seconds of training (evals and
  # saves excluded, resumed runs included) have passed; 0 = none. The stop is a normal end:
  # final eval, checkpoint, summary.json with stopped_by = "max_train_seconds".
  t.max_train_seconds = 0.0
  t.batch_size = 64  # global batch, split over the mesh's data axis
  t.grad_loops = 0  # truncated backprop: only the last T loops get gradients (0 = all)
  t.loss_on = "last"  # last: final loop; window: mean over the last grad_loops loops; all: every loop
  # steps: loop-aligned supervision (RELAY): loop t learns the task's reasoning step t
  # (batch["step_targets"]), the last loop the answer; needs a task with num_steps
  t.loop_weight_power = 0.0  # window/all: loop l's loss weighted by l^power (0 = plain mean)
  # Progressive loss (Bansal): (1 - alpha) * plain + alpha * loss after n ~ U{0..L-1} detached
  # warm-start loops then k ~ U{1..L-n} loops with gradient; n, k drawn per step.
  t.progressive = False
  t.progressive_alpha = 1.0
  # Random loop count per step (Geiping): r = Poisson(LogNormal(log(mean) - sigma^2/2, sigma))
  # + 1 (E[r] = mean + 1) or r ~ U{low..high}; max(r - grad_loops, 0) loops run detached.
  t.random_loops = "none"  # none | poisson_lognormal | uniform
  t.random_loops_mean = 0.0  # r̄; 0 = model.num_loops
  t.random_loops_sigma = 0.5
  t.random_loops_low = 1
  t.random_loops_high = 0  # 0 = model.num_loops
  t.loop_curriculum = ml_collections.ConfigDict({"start": 0, "increment": 0, "every": 0})
  # Deep supervision (TRM / HRM; train/deep_supervision.py): every example stays in its batch
  # slot for up to this many optimizer steps, each running model.num_loops loops from the
  # state it reached, carried across steps detached (0 = off). Evaluation then runs
  # supervision_steps x model.num_loops loops ("eval/...").
  t.supervision_steps = 0
  t.halt_loss_weight = 0.5  # weight of the halting head's binary cross-entropy
  t.halt_exploration = 0.1  # probability that an example must run >= U{2..N} steps first
  # correct: q_halt learns "the answer is fully correct"; q_learning: also HRM's bootstrapped
  # q_continue target (one more loop, without gradient), and halting when q_halt > q_continue
  t.halt_target = "correct"
  t.cross_entropy = "softmax"  # token tasks: softmax | stablemax (TRM / HRM's s(x) normaliser)
  t.ema = 0.0  # decay of an exponential moving average of the weights (0 = off; TRM: 0.999);
  # evaluation and --mode=eval then use the averaged weights
  # model.exit_gate: the loss is Ouro's sum_t p(t) * loss_t - beta * H(p) per position, p(t) =
  # lambda_t * prod_{j<t} (1 - lambda_j) (the last loop takes the rest); this is beta.
  t.exit_gate_entropy = 0.05
  t.optimizer = "adam"
  t.learning_rate = 1e-3
  t.weight_decay = 0.0
  t.b1 = 0.9
  t.b2 = 0.999
  t.schedule = "constant"
  t.warmup_steps = 0
  t.decay_steps = 0  # warmup_stable_decay: the last decay_steps steps go linearly to 0
  t.grad_clip = 0.0  # global-norm clipping; 0 = off
  t.log_every = 50
  t.checkpoint_every = 500
  t.keep_checkpoints = 2

  e = c.eval = ml_collections.ConfigDict()
  e.every = 500
  e.batch_size = 256
  e.num_batches = 4
  e.loops = ()  # extra loop counts to evaluate besides model.num_loops
  # --mode=eval loop sweep of token tasks (analysis/loop_sweep.py): accuracy after every loop
  # 1..max_factor * num_loops, adaptive exit and fixed-point diagnostics, per setting.
  ls = e.loop_sweep = ml_collections.ConfigDict()
  ls.max_factor = 0  # 0 = off
  ls.tasks = ml_collections.ConfigDict()  # harder test settings: name -> task field overrides
  ls.batch_size = 256  # one held-out batch per setting (eval_seed)
  ls.residual_threshold = 1e-3  # adaptive exit: ||h_{t+1} - h_t|| / ||h_t|| below this
  ls.kl_threshold = 1e-3  # adaptive exit: KL(p_{t+1} || p_t) below this (Geiping)
  ls.diagnose_examples = 16  # fixed-point diagnostics on this many sequences; 0 = skip
  ls.diagnose_settings = ()  # settings ("train" or a tasks name) to diagnose; () = all
  # --mode=eval on in-context regression tasks (analysis/icl_report.py): error vs k and vs loops.
  e.icl_prompts = 1280  # prompts per setting (Yang's notebooks: 1280)
  e.icl_settings = ("standard",)  # names from analysis/icl_eval.SUITE, or ("all",)
  e.icl_baselines = ()  # names from tasks/baselines.relevant_baselines(task); () = all of them
  e.icl_max_loops = 0  # loop sweep 1 .. this; 0 = 10x model.num_loops
  # --mode=eval linear probes on loop states (analysis/probes.py): held-out R^2 of a ridge
  # read-out of each target from the state after every loop 0..model.num_loops.
  e.probes = ()  # () = off; targets: answer, steps (tasks with step targets), w (ICL weights)
  e.probe_prompts = 512  # prompts to fit on, and as many held out to score on
  e.probe_ridge = 1.0  # ridge strength on standardised features

  # --mode=generate (models/decode.py): continue `prompt` from the latest checkpoint; writes
  # generate.json (text, tokens, loops per token) and prints the text.
  g = c.generate = ml_collections.ConfigDict()
  g.prompt = ""  # text, encoded with the task's tokenizer ("" = the first held-out sequence's
  # first 32 tokens)
  g.max_new_tokens = 200
  g.num_loops = 0  # 0 = model.num_loops; any count >= 1 at test time
  g.temperature = 0.0  # 0 = greedy; else sample from softmax(logits / temperature)
  g.top_k = 0  # sampling: only the k most likely tokens (0 = all)
  g.seed = 0  # sampling key
  g.cache = "per_loop"  # per_loop (exact) | first_loop (loop 1's cache for all) | every_k
  g.share_every = 2  # every_k: the number of cache slots m (loop t uses slot t mod m)
  g.exit = "none"  # per-token adaptive depth: none | kl | residual | gate (model.exit_gate)
  g.exit_threshold = 1e-3  # kl / residual: below this; gate: exit once the exit CDF >= this
  g.min_loops = 1

  # SHIFT (docs/papers.md, "SHIFT"): train in stages of growing loop count on one parameter set.
  s = c.shift = ml_collections.ConfigDict()
  s.loops = ()  # () = off; e.g. (1, 3): stage k trains at loops[k] (model.num_loops: eval only)
  # When to switch, for every transition: shift_criteria settings {"kind": ..., ...}; kinds
  # scp | fixed_step | budget_fraction | simple_acc | grad_alignment (the gradient cosine between
  # this and the next stage's loop count, measured at its check steps; train/shift_signals.py).
  s.criterion = ml_collections.ConfigDict({"kind": "scp"})
  s.moments = "keep"  # optimizer moments at a switch: keep | reset
  s.lr = "keep"  # LR schedule at a switch: keep (continues) | rewarm (restarts at its step 0)

  # Hessian spectra on a fixed probe batch (docs/papers.md; analysis/landscape_tracking.py):
  # hessian/... metrics in metrics.jsonl, all eigenvalues in spectra.jsonl; --mode=hessian too.
  h = c.hessian = ml_collections.ConfigDict()
  h.every = 0  # steps between spectra (and one at the end); 0 = off while training
  h.method = "exact"  # exact: dense float64 eigh of all eigenvalues | lanczos: top_k only
  h.top_k = 20  # lanczos: eigenvalues kept
  h.num_iters = 80  # lanczos: steps (~4x top_k for clustered spectra)
  h.subset = ""  # regex on '/'-joined param paths, e.g. "layers/attn"; "" = all params
  h.probe_batch_size = 256
  h.probe_seed = 3  # the probe batch; must differ from data_seed and eval_seed
  h.eps_fracs = (1e-3, 1e-2)  # river/valley thresholds eps = frac * lambda_max

  # Device mesh ("data", "model"); which parameter dims go where: train/partitioning.py.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # batch-parallel devices; -1: all devices left after mesh.model
  c.mesh.model = 1  # tensor-parallel devices (Megatron split of attention and MLP)
  c.mesh.fsdp = False  # also shard parameters and optimizer state over the data axis
  # CPU only: run this host as this many JAX devices (jax_num_cpu_devices), so that mesh.data
  # can split the batch over its cores; 0 = JAX's default (one CPU device, or XLA_FLAGS').
  # On 2 cores, 8 devices made the d = 64 ICL step 1.38x faster in the step benchmark and
  # about 1.2x in training (docs/performance.md).
  c.mesh.host_devices = 0
  # XLA compiler options of the train and eval steps (train/compiler.py): "auto" = the
  # measured choice for the backend, "" = XLA's defaults, or "FLAG=VALUE;FLAG=VALUE".
  c.xla_options = "auto"

  # Several runs side by side: name -> nested overrides ({"model": {"num_loops": 3}}); each
  # trains into workdir/name and the comparison plot is drawn over all of them.
  c.variants = ml_collections.ConfigDict()
  return c


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
  """ConfigDict / dict -> {"a.b.c": value}."""
  out = {}
  for key, value in dict(cfg).items():
    path = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)) and path not in FREE_FORM:
      out |= flatten(value, path + ".")
    else:
      out[path] = value
  return out


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first unknown key or bad value."""
  known = flatten(base_config())
  for key in flatten(config):
    if key not in known:
      hint = difflib.get_close_matches(key, known, n=1)
      hint = f" (did you mean {hint[0]!r}?)" if hint else ""
      raise ConfigError(f"config key {key!r} is unknown{hint}; see looped_jax/config.py for the keys.")
  validate_types(config)
  m, t = config.model, config.train
  check_choice("model.block", m.block, BLOCKS)
  validate_recursion(config)
  check_choice("model.attention", m.attention, ATTENTIONS)
  check_choice("model.injection", m.injection, INJECTIONS)
  check_choice("model.init_state", m.init_state, INIT_STATES)
  check_choice("model.state_norm", m.state_norm, STATE_NORMS)
  check(m.injection != "internal" or m.block == "gpt2",
        "model.injection='internal' needs model.block='gpt2' (it feeds the MLP input).")
  check_choice("model.position", m.position, POSITIONS)
  check_choice("model.remat", m.remat, REMAT_POLICIES)
  check_choice("model.dtype", m.dtype, DTYPES)
  check_choice("model.init", m.init, INIT_SCHEMES)
  check(0 < m.layer_norm_eps < 1, f"model.layer_norm_eps={m.layer_norm_eps} must be in (0, 1).")
  check_choice("train.loss_on", t.loss_on, LOSS_ON)
  check_choice("train.optimizer", t.optimizer, OPTIMIZERS)
  check_choice("train.schedule", t.schedule, SCHEDULES)
  if t.schedule == "warmup_stable_decay":
    check(0 < t.decay_steps <= t.num_steps - t.warmup_steps,
          f"train.decay_steps={t.decay_steps} must be in 1..{t.num_steps - t.warmup_steps} "
          "(num_steps - warmup_steps) for schedule 'warmup_stable_decay'.")
  for key in ("d_model", "num_heads", "num_layers", "num_loops", "mlp_ratio"):
    check(int(m[key]) > 0, f"model.{key}={m[key]} must be a positive integer.")
  check(len(m.layer_loops) in (0, m.num_layers)
        and all(isinstance(r, int) and r >= 1 for r in m.layer_loops),
        f"model.layer_loops={tuple(m.layer_loops)} must be () or {m.num_layers} positive integers "
        f"(one loop count per distinct layer, model.num_layers={m.num_layers}).")
  check(m.loops_per_log2 >= 0,
        f"model.loops_per_log2={m.loops_per_log2} must be >= 0 (0 = use model.num_loops).")
  check(int(m.unroll) >= 0, f"model.unroll={m.unroll} must be >= 0 (0 = never unroll).")
  check(m.d_model % m.num_heads == 0,
        f"model.num_heads={m.num_heads} must divide model.d_model={m.d_model}.")
  check(m.position != "rope" or (m.d_model // m.num_heads) % 2 == 0,
        f"model.position='rope' rotates channel pairs: the head width d_model/num_heads = "
        f"{m.d_model}/{m.num_heads} must be even.")
  check(0.0 <= m.dropout < 1.0, f"model.dropout={m.dropout} must be in [0, 1).")
  check(m.injection != "none" or m.init_state == "input",
        f"model.init_state={m.init_state!r} needs an input injection (model.injection='add', "
        "'concat' or 'internal').")
  check(m.init_sigma > 0, f"model.init_sigma={m.init_sigma} must be positive.")
  for key in ("prelude_layers", "coda_layers"):
    check(int(m[key]) >= 0, f"model.{key}={m[key]} must be >= 0.")
  check(t.num_steps >= 0, f"train.num_steps={t.num_steps} must be >= 0.")
  check(t.max_train_seconds >= 0,
        f"train.max_train_seconds={t.max_train_seconds} must be >= 0 (0 = no time budget).")
  check(t.batch_size > 0, f"train.batch_size={t.batch_size} must be positive.")
  check(0 <= t.grad_loops, f"train.grad_loops={t.grad_loops} must be >= 0 (0 = all loops).")
  check(t.loss_on != "window" or t.grad_loops > 0,
        "train.loss_on='window' needs train.grad_loops > 0 (the window length T).")
  check(t.loss_on not in ("all", "steps") or t.grad_loops == 0,
        f"train.loss_on={t.loss_on!r} supervises every loop with gradients; it needs "
        "train.grad_loops=0 "
        "(use loss_on='window' for the last grad_loops loops).")
  check(t.loss_on != "window" or t.grad_loops <= m.num_loops or t.random_loops != "none"
        or bool(config.shift.loops) or bool(t.loop_curriculum.every),
        f"train.grad_loops={t.grad_loops} is the window of train.loss_on='window' and must be "
        f"<= model.num_loops={m.num_loops} (a longer window would be cut to the loop count).")
  validate_loop_options(config)
  for key in ("log_every", "checkpoint_every", "keep_checkpoints"):
    check(t[key] > 0, f"train.{key}={t[key]} must be positive.")
  check(t.learning_rate > 0, f"train.learning_rate={t.learning_rate} must be positive.")
  for key in ("b1", "b2"):
    check(0 <= t[key] < 1, f"train.{key}={t[key]} must be in [0, 1).")
  for key in ("weight_decay", "grad_clip"):
    check(t[key] >= 0, f"train.{key}={t[key]} must be >= 0 (0 = off).")
  lc = t.loop_curriculum
  check(lc.every >= 0 and lc.increment >= 0 and lc.start >= 0,
        "train.loop_curriculum start/increment/every must be >= 0.")
  check(config.eval.every > 0 and config.eval.num_batches > 0 and config.eval.batch_size > 0,
        "eval.every, eval.num_batches and eval.batch_size must be positive.")
  ls = config.eval.loop_sweep
  check(ls.max_factor >= 0 and ls.batch_size > 0 and ls.diagnose_examples >= 0,
        "eval.loop_sweep.max_factor and diagnose_examples must be >= 0, batch_size positive.")
  check(ls.diagnose_examples <= ls.batch_size,
        f"eval.loop_sweep.diagnose_examples={ls.diagnose_examples} must be <= its batch_size.")
  for name in ls.diagnose_settings:
    check(name == "train" or name in ls.tasks,
          f"eval.loop_sweep.diagnose_settings names {name!r}; allowed: 'train' and the names "
          "in eval.loop_sweep.tasks.")
  check(ls.residual_threshold > 0 and ls.kl_threshold > 0,
        "eval.loop_sweep.residual_threshold and kl_threshold must be positive.")
  check(config.eval.icl_prompts > 0 and config.eval.icl_max_loops >= 0,
        "eval.icl_prompts must be positive and eval.icl_max_loops >= 0 (0 = 10x model.num_loops).")
  for name in config.eval.probes:
    check_choice("eval.probes entry", name, PROBE_TARGETS)
  check(config.eval.probe_prompts > 0 and config.eval.probe_ridge > 0,
        f"eval.probe_prompts={config.eval.probe_prompts} and eval.probe_ridge="
        f"{config.eval.probe_ridge} must be positive.")
  for loops in config.eval.loops:
    check(isinstance(loops, int) and loops > 0,
          f"eval.loops contains {loops!r}; every loop count must be a positive integer.")
  check(config.eval_seed != config.data_seed,
        f"eval_seed={config.eval_seed} must differ from data_seed (eval data must be held out).")
  check(isinstance(config.xla_options, str),
        f"xla_options={config.xla_options!r} must be a string: 'auto', '' or 'FLAG=VALUE;...'.")
  validate_looped_lm(config)
  validate_mesh(config)
  validate_shift(config)
  validate_hessian(config)
  for name, overrides in dict(config.variants).items():
    check(isinstance(overrides, (dict, ml_collections.ConfigDict)),
          f"variants.{name} must be a nested dict of config overrides.")


def validate_looped_lm(config: ml_collections.ConfigDict) -> None:
  """Checks the PLT and exit-gate options and the generate section."""
  m, t, g = config.model, config.train, config.generate
  if m.plt:
    check(m.plt_window >= 1, f"model.plt_window={m.plt_window} must be >= 1 (keys per window).")
    check(m.injection == "add", "model.plt adds the previous token's state to the input "
          f"injection: it needs model.injection='add', not {m.injection!r}.")
    for bad, what in ((m.recursion != "none", "model.recursion"),
                      (any(r != 1 for r in m.layer_loops), "model.layer_loops"),
                      (m.timestep, "model.timestep"), (t.grad_loops > 0, "train.grad_loops > 0"),
                      (t.progressive, "train.progressive"),
                      (t.random_loops != "none", "train.random_loops"),
                      (t.supervision_steps > 0, "train.supervision_steps")):
      check(not bad, f"model.plt runs every loop in one shifted pass and does not combine with "
            f"{what}.")
  if m.exit_gate:
    check(t.exit_gate_entropy >= 0,
          f"train.exit_gate_entropy={t.exit_gate_entropy} must be >= 0 (Ouro's beta).")
    for bad, what in ((m.recursion != "none", "model.recursion"),
                      (t.grad_loops > 0, "train.grad_loops > 0"),
                      (t.loss_on != "last", f"train.loss_on={t.loss_on!r}"),
                      (t.progressive, "train.progressive"),
                      (t.random_loops != "none", "train.random_loops"),
                      (bool(config.shift.loops), "shift.loops"),
                      (t.cross_entropy != "softmax", f"train.cross_entropy={t.cross_entropy!r}"),
                      (t.supervision_steps > 0, "train.supervision_steps")):
      check(not bad, "model.exit_gate trains with Ouro's objective over every loop and does not "
            f"combine with {what}.")
  check_choice("generate.cache", g.cache, CACHE_STRATEGIES)
  check_choice("generate.exit", g.exit, EXIT_CRITERIA)
  check(g.exit != "gate" or m.exit_gate,
        "generate.exit='gate' needs a model with an exit gate (model.exit_gate=True).")
  for key in ("max_new_tokens", "share_every", "min_loops"):
    check(g[key] >= 1, f"generate.{key}={g[key]} must be >= 1.")
  check(g.num_loops >= 0, f"generate.num_loops={g.num_loops} must be >= 0 (0 = model.num_loops).")
  check(g.temperature >= 0 and g.top_k >= 0 and g.exit_threshold > 0,
        "generate.temperature and top_k must be >= 0 and generate.exit_threshold positive.")


def validate_types(config: ml_collections.ConfigDict) -> None:
  """Checks that every key holds its default's type (a float key may hold an int) and that
  every number is finite: a value of another type fails later with a traceback, and
  inf / nan pass range checks such as learning_rate > 0."""
  defaults = flatten(base_config())
  for key, value in flatten(config).items():
    default = defaults[key]
    if isinstance(default, bool):
      ok, what = isinstance(value, bool), "True or False"
    elif isinstance(default, int):
      ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
      ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
      what = "a finite number"
    elif isinstance(default, str):
      ok, what = isinstance(value, str), "a string"
    elif isinstance(default, (tuple, list)):
      ok, what = isinstance(value, (tuple, list)), "a tuple"
    else:
      continue
    check(ok, f"config key {key}={value!r} must be {what} (its default is {default!r}).")


def validate_recursion(config: ml_collections.ConfigDict) -> None:
  """Checks model.recursion / halting and deep supervision (train.supervision_steps, ema, ...)."""
  m, t = config.model, config.train
  check_choice("model.recursion", m.recursion, RECURSIONS)
  check_choice("train.cross_entropy", t.cross_entropy, CROSS_ENTROPIES)
  check_choice("train.halt_target", t.halt_target, HALT_TARGETS)
  check(m.block != "post_norm" or not m.timestep,
        "model.timestep needs model.block 'gpt2' or 'attn_only' (post_norm has no adaLN scales).")
  if m.recursion != "none":
    check(m.inner_loops >= 1 and m.outer_cycles >= 1 and m.high_layers >= 0,
          f"model.inner_loops={m.inner_loops} and model.outer_cycles={m.outer_cycles} must be "
          f">= 1 and model.high_layers={m.high_layers} >= 0.")
    check(not m.layer_loops, f"model.recursion={m.recursion!r} applies its stack in its own "
          "cycles: model.layer_loops must be () with it.")
    clashes = {"injection": "none", "state_norm": "none", "init_state": "input",
               "timestep": False, "position_in_loop": False, "norm_in_loop": False,
               "dropout": 0.0}
    for key, allowed in clashes.items():
      check(m[key] == allowed, f"model.recursion={m.recursion!r} injects x and starts from its "
            f"own y_0, z_0: it needs model.{key}={allowed!r}, not {m[key]!r}.")
  check(t.supervision_steps >= 0,
        f"train.supervision_steps={t.supervision_steps} must be >= 0 (0 = no deep supervision).")
  check(not m.halting or t.supervision_steps > 0,
        "model.halting trains its head under deep supervision: set train.supervision_steps > 0.")
  check(t.halt_target == "correct" or m.halting,
        f"train.halt_target={t.halt_target!r} needs model.halting=True.")
  check(0.0 <= t.ema < 1.0, f"train.ema={t.ema} must be in [0, 1) (0 = off; TRM uses 0.999).")
  check(t.halt_loss_weight >= 0 and 0.0 <= t.halt_exploration <= 1.0,
        f"train.halt_loss_weight={t.halt_loss_weight} must be >= 0 and "
        f"train.halt_exploration={t.halt_exploration} in [0, 1].")
  if t.supervision_steps:
    check(t.random_loops == "none" and not t.progressive and not config.shift.loops
          and not t.loop_curriculum.every and t.loss_on == "last",
          "train.supervision_steps runs model.num_loops loops per step with loss_on='last'; it "
          "cannot be combined with train.random_loops, progressive, loop_curriculum, shift.loops "
          "or loss_on 'window' / 'all'.")


def validate_loop_options(config: ml_collections.ConfigDict) -> None:
  """Checks progressive loss and random loop counts (train.progressive*, train.random_loops*)."""
  t = config.train
  check_choice("train.random_loops", t.random_loops, RANDOM_LOOPS)
  check(0.0 <= t.progressive_alpha <= 1.0,
        f"train.progressive_alpha={t.progressive_alpha} must be in [0, 1].")
  if t.random_loops == "none":
    return
  check(not t.progressive, "train.random_loops and train.progressive both draw loop counts; "
        "use one of them.")
  check(t.grad_loops > 0, "train.random_loops needs train.grad_loops > 0 (the backprop depth k; "
        "set it to the largest count for full backprop).")
  check(t.loss_on in ("last", "window"),
        f"train.random_loops needs train.loss_on 'last' or 'window', not {t.loss_on!r}.")
  check(not t.loop_curriculum.every and not config.shift.loops,
        "train.random_loops sets the loop count; it cannot be combined with "
        "train.loop_curriculum or shift.loops.")
  check(t.random_loops_mean >= 0 and t.random_loops_sigma >= 0,
        "train.random_loops_mean and train.random_loops_sigma must be >= 0 (mean 0 = "
        "model.num_loops).")
  high = t.random_loops_high or config.model.num_loops
  check(1 <= t.random_loops_low <= high,
        f"train.random_loops_low={t.random_loops_low} and high={high} must satisfy "
        "1 <= low <= high.")


def validate_mesh(config: ml_collections.ConfigDict) -> None:
  """Checks the mesh against the model; against the devices when the mesh is built."""
  mesh, m = config.mesh, config.model
  check(mesh.data == -1 or mesh.data > 0,
        f"mesh.data={mesh.data} must be -1 (all devices) or a positive device count.")
  check(isinstance(mesh.fsdp, bool), f"mesh.fsdp={mesh.fsdp!r} must be True or False.")
  check(isinstance(mesh.host_devices, int) and mesh.host_devices >= 0,
        f"mesh.host_devices={mesh.host_devices!r} must be 0 (JAX's default) or a positive "
        "device count.")
  # Tensor parallelism splits heads, the QKV / MLP widths and the out-projection inputs.
  widths = [m.num_heads, m.d_model] + ([m.mlp_ratio * m.d_model] if m.block == "gpt2" else [])
  widths += [swiglu_width(m.d_model, m.mlp_ratio)] if m.block == "post_norm" else []
  allowed = [d for d in range(1, min(widths) + 1) if all(w % d == 0 for w in widths)]
  check(mesh.model in allowed,
        f"mesh.model={mesh.model} must divide model.num_heads={m.num_heads} and the hidden "
        f"sizes; use one of {', '.join(map(str, allowed))}.")


def validate_shift(config: ml_collections.ConfigDict) -> None:
  """Checks the `shift` section; the criterion settings are parsed by ShiftSchedule."""
  s, t = config.shift, config.train
  check_choice("shift.moments", s.moments, shift_criteria.MOMENTS)
  check_choice("shift.lr", s.lr, shift_criteria.LR_MODES)
  if not s.loops:
    return
  schedule = shift_schedule(config)  # raises ConfigError on bad loops / criterion settings
  check(not t.loop_curriculum.every,
        "shift.loops and train.loop_curriculum both set the training loop count; use one of them.")
  for k, crit in enumerate(schedule.criteria):
    every = getattr(crit, "every", None)
    check(every is None or every % t.log_every == 0,
          f"shift.criterion every={every} must be a multiple of train.log_every={t.log_every} "
          f"(transition {k}: the criterion is fed the train signals at log steps).")


def validate_hessian(config: ml_collections.ConfigDict) -> None:
  """Checks the `hessian` section (sizes against the model: when a spectrum is computed)."""
  h = config.hessian
  check_choice("hessian.method", h.method, HESSIAN_METHODS)
  check(h.every >= 0, f"hessian.every={h.every} must be >= 0 (0 = off).")
  check(1 <= h.top_k <= h.num_iters,
        f"hessian.top_k={h.top_k} must be in [1, hessian.num_iters={h.num_iters}].")
  check(h.probe_batch_size > 0, f"hessian.probe_batch_size={h.probe_batch_size} must be positive.")
  check(h.probe_seed not in (config.data_seed, config.eval_seed),
        f"hessian.probe_seed={h.probe_seed} must differ from data_seed and eval_seed.")
  check(len(h.eps_fracs) > 0 and all(0 < f < 1 for f in h.eps_fracs),
        f"hessian.eps_fracs={tuple(h.eps_fracs)} must be fractions in (0, 1).")
  try:
    re.compile(h.subset)
  except re.error as e:
    raise ConfigError(f"hessian.subset={h.subset!r} is not a valid regex ({e}).") from None


def shift_schedule(config: ml_collections.ConfigDict):
  """The run's `ShiftSchedule`, or None when `shift.loops` is empty (SHIFT off)."""
  if not config.shift.loops:
    return None
  s = config.shift
  return shift_criteria.ShiftSchedule.from_dict(
      {"loops": [int(x) for x in s.loops], "criterion": s.criterion, "moments": s.moments,
       "lr": s.lr}, total_steps=config.train.num_steps)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Any) -> ml_collections.ConfigDict:
  """A copy of `config` with the nested `overrides` ({"model": {"num_loops": 3}}) merged in.

  Keys outside `task` must exist already (ConfigError otherwise); `validate` checks values.
  """
  merged = config.to_dict()

  def merge(node: dict, update: Any, path: str) -> None:
    for key, value in dict(update).items():
      here = f"{path}{key}"
      free = (here.startswith("task") or here.startswith("shift.criterion")
              or here.startswith("eval.loop_sweep.tasks"))
      if key not in node and not free:
        raise ConfigError(f"override {here!r} names an unknown config key.")
      if here == "shift.criterion":  # replaced whole: another kind has other settings
        node[key] = value.to_dict() if isinstance(value, ml_collections.ConfigDict) else dict(value)
      elif isinstance(value, (dict, ml_collections.ConfigDict)) and isinstance(node.get(key), dict):
        merge(node[key], value, here + ".")
      else:
        node[key] = value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value

  merge(merged, overrides, "")
  return ml_collections.ConfigDict(merged)


def resolve_loops(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with model.num_loops = max(1, ceil(c * log2 n)) when c = model.loops_per_log2 > 0,
  n the task's `problem_size` (its sequence length if it has none); otherwise unchanged."""
  c = config.model.loops_per_log2
  if c <= 0:
    return config
  from looped_jax import tasks  # pylint: disable=import-outside-toplevel
  task = tasks.get(config.task)
  n = getattr(task, "problem_size", task.seq_len)
  return apply_overrides(config, {"model": {"num_loops": loops_for_size(n, c)}})


def loops_for_size(n: int, loops_per_log2: float) -> int:
  """L(n) = max(1, ceil(c * log2 n)): loops growing with the logarithm of the input size."""
  return max(1, math.ceil(loops_per_log2 * math.log2(max(n, 1)) - 1e-9))


def without_variants(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(config.to_dict())
  config.variants = ml_collections.ConfigDict()
  return config


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
