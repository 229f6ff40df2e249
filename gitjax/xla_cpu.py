"""XLA:CPU options chosen by measurement, set in one documented place.

XLA reads ``XLA_FLAGS`` once, when JAX starts its first backend, so
``configure()`` must run before any JAX computation. The launchers call it
(``--xla_cpu_defaults``, on by default); code that embeds gitjax calls it
itself, first thing::

    from gitjax import xla_cpu
    xla_cpu.configure()

Nothing sets a flag at import. The flags only change how XLA:CPU computes;
other backends ignore them. Without ``configure()``, the attack engine's
compiled steps still get them as per-program compiler options
(``compiler_options()``, ``jit``), so a library user's attacks are fast
either way.

``--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE,
LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT`` (one value, no space): YNNPACK
computes reductions and matrix products, XLA's own (Eigen) code the
convolutions. jaxlib 0.10.2's default also hands convolutions (and
elementwise fusions) to YNNPACK, whose filter gradient ran 3.4x slower than
Eigen's on the 2-core CPU (a 3x3, 32-channel convolution on [32, 32, 32,
32]: 15.5 -> 4.5 ms); with no YNNPACK at all (this flag empty, the choice
until 2026-12-06) XLA's reductions run unvectorized. Against that empty
list, interleaved on the 2-core CPU (BUILD_NOTES.md, issue 13): a GGL
CMA-ES generation (ResNet-18 width 64, 50 candidates) 0.67x the time, the
IG step 0.83-0.97x, the GIT training step 0.98x; jaxlib's default is 1.3x
slower on the GIT step. Results change by rounding only.

``canonical_convs(fn)``: XLA:CPU's ``ConvCanonicalization`` pass gives
Eigen (its fast convolutions) only the entry computation's convolutions;
inside a ``while`` body (``fori_loop``, ``scan``, ``lax.map``) the
gradients' convolutions keep JAX's dimension numbers and run in XLA's
generic loop emitter: a filter gradient 9x slower, the IG step 3-10x, a
GGL generation under ``lax.map`` 10x (measured 2026-12-06, BUILD_NOTES.md).
``canonical_convs`` does the pass's rewrite in JAX, so it holds in loop
bodies too; the engine and GGL use it for theirs.

The flag is known to jaxlib 0.10 and 0.11; a jaxlib that does not know a
flag in ``XLA_FLAGS`` aborts the process, so outside ``SUPPORTED`` nothing
is added (with a log line).
"""

import functools
import logging
import os

import jax
from jax import lax
from jax.extend import core as jax_core
import jax.numpy as jnp

FLAGS = ("--xla_cpu_experimental_ynn_fusion_type="
         "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",)
SUPPORTED = ((0, 10), (0, 12))  # jaxlib versions [low, high).


def _backends_started() -> bool:
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  started = getattr(xla_bridge, "backends_are_initialized", None)
  return bool(started and started())


def _jaxlib_version() -> tuple[int, ...]:
  import jaxlib  # pylint: disable=g-import-not-at-top
  return tuple(int(p) for p in jaxlib.__version__.split(".")[:2])


def _name(flag: str) -> str:
  return flag.split("=", 1)[0]


def _supported() -> bool:
  low, high = SUPPORTED
  return low <= _jaxlib_version() < high


def _unset(flags: tuple[str, ...], xla_flags: str) -> tuple[str, ...]:
  """The ``flags`` whose names ``xla_flags`` does not name."""
  named = {_name(f) for f in xla_flags.split()}
  return tuple(f for f in flags if _name(f) not in named)


def configure(flags: tuple[str, ...] = FLAGS) -> tuple[str, ...]:
  """Appends ``flags`` to ``XLA_FLAGS``; returns the ones it added.

  A flag whose name ``XLA_FLAGS`` already names is left as the user set it.

  Raises:
    RuntimeError: JAX has already started a backend (too late for XLA to
      read new flags).
  """
  if _backends_started():
    raise RuntimeError("xla_cpu.configure() must run before JAX's first "
                       "computation: a backend has already started")
  if not _supported():
    logging.info("xla_cpu.configure: jaxlib %s is outside %s; no flags set",
                 _jaxlib_version(), SUPPORTED)
    return ()
  current = os.environ.get("XLA_FLAGS", "")
  added = _unset(flags, current)
  if added:
    os.environ["XLA_FLAGS"] = " ".join((current, *added)).strip()
  return added


def compiler_options() -> dict:
  """``FLAGS`` as per-program compiler options for XLA:CPU programs.

  Empty off the CPU, outside ``SUPPORTED``, and for a flag that
  ``XLA_FLAGS`` names (``configure()`` ran, or the user's own setting).
  Call it once JAX runs (it asks for the default backend).
  """
  return dict(_options())


def _options() -> tuple:
  """``compiler_options()`` as sorted (name, value) pairs (hashable)."""
  if jax.default_backend() != "cpu":
    return ()
  return _options_for(os.environ.get("XLA_FLAGS", ""))


@functools.cache
def _options_for(xla_flags: str) -> tuple:
  if not _supported():
    return ()
  return tuple(sorted((_name(f)[2:], f.split("=", 1)[1])
                      for f in _unset(FLAGS, xla_flags)))


def jit(**jit_kwargs):
  """A decorator: ``jax.jit(fn, **jit_kwargs)``, with ``compiler_options()``
  when there are any (chosen at each call, so importing starts nothing).
  The result has ``clear_cache()`` and ``cache_size()`` over both."""

  def wrap(fn):
    plain = jax.jit(fn, **jit_kwargs)
    tuned = {}
    static = set(jit_kwargs.get("static_argnames", ()))

    @functools.wraps(fn)
    def call(*args, **kwargs):
      traced = [v for k, v in kwargs.items() if k not in static]
      key = _options()
      if not key or any(isinstance(x, jax.core.Tracer)  # Inside a trace:
                        for x in jax.tree.leaves((args, traced))):
        return plain(*args, **kwargs)  # only a top-level jit takes options.
      if key not in tuned:
        tuned[key] = jax.jit(fn, compiler_options=dict(key), **jit_kwargs)
      return tuned[key](*args, **kwargs)

    def clear_cache():
      for f in (plain, *tuned.values()):
        f.clear_cache()

    call.clear_cache = clear_cache
    call.cache_size = lambda: sum(f._cache_size()  # pylint: disable=protected-access
                                  for f in (plain, *tuned.values()))
    return call

  return wrap


# ------------------------------------------------ canonical convolutions ----

_CALLS = ("jit", "pjit", "closed_call", "core_call", "custom_jvp_call",
          "custom_vjp_call")


def canonical_convs(fn):
  """``fn`` with every convolution in NHWC / HWIO / NHWC form.

  Traces ``fn`` (positional pytree arguments) to a jaxpr and evaluates it
  with each convolution of other dimension numbers rewritten as transposes
  around the canonical one (what XLA:CPU does, but only outside loops);
  nested calls are inlined so theirs are rewritten too. The same function
  up to rounding. Meant for a whole step (already differentiated) that a
  loop body runs on XLA:CPU; it keeps no custom derivative rules.
  """

  def wrapped(*args):
    closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    out = _eval(closed.jaxpr, closed.consts, jax.tree.leaves(args))
    return jax.tree.unflatten(jax.tree.structure(shape), out)

  return wrapped


def loop_body(fn):
  """``fn`` for a loop body: ``canonical_convs(fn)`` on a CPU, else
  ``fn``."""
  return canonical_convs(fn) if jax.default_backend() == "cpu" else fn


def _eval(jaxpr, consts, args) -> list:
  env = {}

  def read(v):
    return v.val if isinstance(v, jax_core.Literal) else env[v]

  env.update(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    ins = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      out = [_canonical_conv(*ins, eqn.params)]
    elif name in _CALLS:
      sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
      out = _eval(sub.jaxpr, sub.consts, ins)
    else:
      params = eqn.primitive.get_bind_params(eqn.params)
      with eqn.ctx.manager:
        out = eqn.primitive.bind(*ins, **params)
      out = out if eqn.primitive.multiple_results else [out]
    env.update(zip(eqn.outvars, out))
  return [read(v) for v in jaxpr.outvars]


def _canonical_conv(lhs, rhs, params):
  """One convolution as transposes around its NHWC / HWIO / NHWC form."""
  dn = params["dimension_numbers"]
  spatial = len(dn.lhs_spec) - 2
  # Specs are (batch or out-feature, feature or in-feature, spatial...).
  lhs_perm = (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1])
  rhs_perm = (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])
  out_perm = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])
  canonical = lax.ConvDimensionNumbers(
      lhs_spec=(0, spatial + 1, *range(1, spatial + 1)),
      rhs_spec=(spatial + 1, spatial, *range(spatial)),
      out_spec=(0, spatial + 1, *range(1, spatial + 1)))
  identity = tuple(range(spatial + 2))
  if lhs_perm == rhs_perm == out_perm == identity:
    return lax.conv_general_dilated_p.bind(lhs, rhs, **params)
  out = lax.conv_general_dilated_p.bind(
      jnp.transpose(lhs, lhs_perm), jnp.transpose(rhs, rhs_perm),
      **{**params, "dimension_numbers": canonical})
  inverse = [0] * len(out_perm)
  for i, d in enumerate(out_perm):
    inverse[d] = i
  return jnp.transpose(out, inverse)
