"""The experiments of Part II (chapters 5–7) as plain functions, and their command line.

Five experiments, each a pure function of a settings dict that returns a JSON-serialisable
dict (lists, numbers, strings, ``None`` for a missing value):

* :func:`.run_mnist_schedules` — Section 5: LRS-OPT with the exact hypergradient, the online
  schedules of HD, RTHO and MARTHE against ``β``, and the quality of the online hypergradient
  estimates against the exact ``∂f_T/∂η_t`` along the same trajectory;
* :func:`.run_real_world` — Section 6: fixed schedules (exponential decay, staircase, SGDR)
  against HD (on the training loss), RTHO and MARTHE, on MNIST at quick scale and on
  CIFAR-10 (VGG-11-BN, SGD-momentum) / CIFAR-100 (ResNet-18, Adam) at paper scale;
* :func:`.run_mnist_protocol` — Section 5's choices measured the other way: MARTHE as the
  authors' release runs it (β_0 = 1e-8, κ on a grid, Δ clipped at ±100 or not), the β grid
  extended, μ = 0.999, η_0 = 0.1, E on a validation minibatch;
* :func:`.run_sensitivity` — Appendix C: MARTHE's final validation error over a ``β × μ`` grid;
* :func:`.run_per_layer` — beyond the paper: one learning rate per layer
  (:class:`hypergrad.optim.Marthe`) against one for the network and a fixed η;
* :func:`.run_lr_free` — beyond the paper: the hypergradient methods against the
  learning-rate-free optimizers (Prodigy, Schedule-Free, D-Adaptation, DoG).

Analyses (used by the chapters; they read results and never train): :func:`~hypergrad.experiments.section5_claims.mnist_claims`,
:func:`.real_world_claims` and :func:`.sensitivity_claims` turn each claim of the paper into
measurements and a verdict, with one rule for "beyond noise" (:func:`.compare`: a difference
counts when it lies outside its 95 % confidence interval over seeds, and is undecided
otherwise);
:func:`~hypergrad.experiments.analysis.sci`, :func:`.plural` and :func:`.md_table` format what
the chapters print.

:func:`.settings` gives each experiment's settings at a scale (``"tiny"`` for tests,
``"quick"`` for the book on a CPU, ``"paper"`` for the paper's settings on a GPU).

Resuming
--------
A run is cut into *units* (one seed × method × β online run, one LRS-OPT seed, one training
run). With an output folder, every finished unit is saved to its own gzip-compressed JSON
file, ``<out>/units/<name>.json.gz`` (plain ``<name>.json`` in the older form, still read;
``python -m hypergrad.experiments compact-units <dir>`` converts those), with the settings
that determine it; a later call skips the units whose file
holds the same settings, so an interrupted run resumes without redoing finished work (an
LRS-OPT unit also resumes *within* the unit, through :func:`hypergrad.lrs_opt.lrs_opt`;
a training run of :func:`.run_real_world` resumes from its last finished epoch). A unit file
with other settings is recomputed (the old file is kept as ``*.json.gz.stale``).

Command line::

    python -m hypergrad.experiments mnist-schedules --scale paper --out results/ --device cuda
    python -m hypergrad.experiments real-world --scale paper --out results/ --device cuda
    python -m hypergrad.experiments sensitivity --scale quick --out results/ --seeds 3

writes ``results/<experiment>/<scale>/results.json`` (settings, results and
:func:`hypergrad.io.run_metadata`: commit, hardware, versions, wall time) and the unit
files beside it. For ``mnist-schedules`` and ``sensitivity`` the long units (:class:`.Unit`,
``plan_units`` of each experiment) are computed by worker processes
(:mod:`hypergrad.experiments.parallel`; ``--workers``, default one single-thread worker per
CPU core) in populations whose size is measured on the experiment's model (``--population``).
The paper-scale unit files are committed with the book as they finish
(``scripts/paper_runs.sh``); :func:`.committed` reads them as they are (progress, wall time, machine, and the result of the
complete seeds) without computing anything, for the chapters' paper-scale sections.
"""

from hypergrad.experiments.analysis import (  # noqa: F401
    _SUPERSCRIPT,
    _T975,
    FAILS,
    HOLDS,
    PAR_MARGIN,
    UNDECIDED,
    _acc,
    _cosine,
    centred_mean,
    combine,
    compare,
    hypergradient_agreement,
    linger,
    md_table,
    normalised_distance,
    plural,
    roughness,
    sci,
    signal_to_noise,
    t975,
    tally,
    verdict,
)
from hypergrad.experiments.choices import ALTERNATIVES, choice_effects  # noqa: F401
from hypergrad.experiments.claims import (  # noqa: F401
    CHOICES,
    QUOTES,
    Claim,
    protocol_records,
    section5_records,
    verdict_word,
)
from hypergrad.experiments.cli import (  # noqa: F401
    RUNNERS,
    _check_out,
    _conform,
    _device_name,
    _kind,
    _positive_int,
    _set_path,
    _SettingError,
    load_or_run,
    main,
    run,
)
from hypergrad.experiments.committed import (  # noqa: F401
    COMMITTED,
    committed,
    duration,
    machine_table,
    progress_text,
    run_table,
)
from hypergrad.experiments.lr_free import run_lr_free  # noqa: F401
from hypergrad.experiments.mnist_schedules import (  # noqa: F401
    MnistTask,
    _lrs_opt_unit,
    _method_specs,
    _quality,
    _task_settings,
    compact_run,
    lrs_opt_settings,
    run_mnist_schedules,
)
from hypergrad.experiments.per_layer import layer_groups, run_per_layer  # noqa: F401
from hypergrad.experiments.protocol import (  # noqa: F401
    committed_protocol,
    decimate,
    run_mnist_protocol,
)
from hypergrad.experiments.real_world import (  # noqa: F401
    MAX_POINTS,
    _EpochBatches,
    _make_trainer,
    _marthe_unit,
    _rw_data,
    _rw_model,
    _select_kappa,
    _train_unit,
    real_world_claims,
    run_real_world,
    summarize_real_world,
)
from hypergrad.experiments.section5_claims import mnist_claims, summarize_online  # noqa: F401
from hypergrad.experiments.sensitivity import (  # noqa: F401
    run_sensitivity,
    sensitivity_claims,
    sensitivity_grids,
    sensitivity_records,
)
from hypergrad.experiments.settings import (  # noqa: F401
    _MNIST_PAPER_TASK,
    EXPERIMENTS,
    LABELS,
    SCALES,
    _mnist_schedules_settings,
    _real_world_settings,
    _sensitivity_settings,
    label,
    settings,
)
from hypergrad.experiments.store import (  # noqa: F401
    MissingUnit,
    Unit,
    UnitStore,
    _bar,
    _jsonable,
    _seed_key,
    compact_units,
    load_results,
    plan_groups,
    read_unit_file,
    result_dir,
    unit_file,
    unit_files,
    unit_group,
    unit_name,
)

__all__ = ['EXPERIMENTS', 'SCALES', 'LABELS', 'label', 'settings', 'Unit', 'UnitStore', 'result_dir', 'load_results', 'hypergradient_agreement', 'HOLDS', 'FAILS', 'UNDECIDED', 'sci', 'plural', 'md_table', 't975', 'compare', 'combine', 'verdict', 'tally', 'normalised_distance', 'linger', 'centred_mean', 'roughness', 'signal_to_noise', 'PAR_MARGIN', 'MnistTask', 'run_mnist_schedules', 'summarize_online', 'mnist_claims', 'MAX_POINTS', 'run_real_world', 'summarize_real_world', 'real_world_claims', 'run_sensitivity', 'sensitivity_grids', 'sensitivity_claims', 'RUNNERS', 'run', 'load_or_run', 'main', 'COMMITTED', 'committed', 'MissingUnit', 'duration', 'progress_text', 'run_table', 'machine_table', 'CHOICES', 'QUOTES', 'Claim', 'protocol_records', 'section5_records', 'sensitivity_records', 'verdict_word', 'committed_protocol', 'decimate', 'run_mnist_protocol', 'ALTERNATIVES', 'choice_effects', 'read_unit_file', 'unit_file', 'unit_files', 'unit_name', 'compact_units', 'run_per_layer', 'layer_groups', 'run_lr_free', 'plan_groups', 'unit_group']
