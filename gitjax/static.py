"""Static jit arguments keyed by what they hold.

``jax.jit`` caches a program per static argument, by hash and equality.
``Keyed`` gives a class both from one ``_key``; ``held`` keys arrays by
identity, for objects that hold arrays a program reads (a prior's weights,
a leak compiled in as constants), where hashing the values would cost a
pass over them at every call.
"""

import jax


class Keyed:
  """A static jit argument, equal and hashed by its type and ``_key``."""
  _key: tuple = ()

  def __hash__(self):
    return hash((type(self), self._key))

  def __eq__(self, other):
    return type(other) is type(self) and self._key == other._key


def held(tree) -> tuple:
  """``tree``'s structure and its leaves' ids: a key by identity.

  Who keys a cached program by it must hold ``tree``, so that the ids
  cannot be reused while the program is cached.
  """
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple(id(x) for x in leaves)
