"""Maze generator and task, checked against an independent BFS and a path enumerator."""

import collections
import functools

import jax
import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.errors import ConfigError
from looped_jax.tasks import maze


def _neighbours(grid, r, c):
  for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
    if 0 <= r + dr < len(grid) and 0 <= c + dc < len(grid) and grid[r + dr][c + dc] != maze.WALL:
      yield r + dr, c + dc


def _ref_dist(grid, start):
  """BFS distances over non-wall squares of a list-of-lists grid: {(r, c): moves}."""
  dist = {start: 0}
  queue = collections.deque([start])
  while queue:
    here = queue.popleft()
    for n in _neighbours(grid, *here):
      if n not in dist:
        dist[n] = dist[here] + 1
        queue.append(n)
  return dist


def _ref_count_paths(grid, start, goal, limit=2):
  """Shortest start-goal paths, enumerated one by one (each step one move closer to goal)
  up to `limit`: a count independent of the generator's dynamic programming."""
  to_goal = _ref_dist(grid, goal)
  found = 0

  def walk(here):
    nonlocal found
    if here == goal:
      found += 1
      return
    for n in _neighbours(grid, *here):
      if to_goal.get(n, -1) == to_goal[here] - 1 and found < limit:
        walk(n)

  walk(start)
  return found


def _check(inputs, targets, side):
  """Asserts (inputs, targets) [side * side] is a valid example; returns the path length."""
  x = np.asarray(inputs).reshape(side, side)
  t = np.asarray(targets).reshape(side, side)
  assert set(np.unique(x)) <= {maze.WALL, maze.OPEN, maze.START, maze.GOAL}
  assert np.sum(x == maze.START) == 1 and np.sum(x == maze.GOAL) == 1
  border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
  assert np.all(border == maze.WALL)
  on_path = t == maze.PATH
  assert np.all(x[on_path] == maze.OPEN)
  np.testing.assert_array_equal(t[~on_path], x[~on_path])
  s = tuple(int(v) for v in np.argwhere(x == maze.START)[0])
  g = tuple(int(v) for v in np.argwhere(x == maze.GOAL)[0])
  grid = x.tolist()
  dist = _ref_dist(grid, s)[g]  # reachable, else KeyError
  squares = {s, g} | {tuple(int(v) for v in p) for p in np.argwhere(on_path)}
  assert len(squares) == dist + 1  # as many squares as a shortest path has
  # A simple path from S to G: the ends have one neighbour on it, the rest two.
  for sq in squares:
    degree = sum(n in squares for n in _neighbours(grid, *sq))
    assert degree == (1 if sq in (s, g) else 2), sq
  assert set(_ref_dist([[maze.WALL if (r, c) not in squares else maze.OPEN
                         for c in range(side)] for r in range(side)], s)) == squares
  assert _ref_count_paths(grid, s, g) == 1  # unique
  assert set(maze.shortest_path(x, s, g)) == squares  # and the module's oracle agrees
  return dist


@functools.cache
def _batch(task, seed=0, batch_size=64):
  return jax.device_get(jax.jit(task.sample, static_argnums=1)(jax.random.key(seed),
                                                               batch_size))


@pytest.mark.parametrize("cells,extra,min_path", [(2, 0, 0), (5, 0, 0), (5, 0, 25),
                                                  (4, 5, 0), (6, 12, 14)])
def test_generated_mazes(cells, extra, min_path):
  rng = np.random.default_rng(cells + extra + min_path)
  side = 2 * cells + 1
  for _ in range(20):
    inputs, targets = maze.generate(rng, cells, extra, min_path)
    assert inputs.shape == targets.shape == (side * side,) and inputs.dtype == np.int8
    assert _check(inputs, targets, side) >= max(min_path, 1)
    grid = inputs.reshape(side, side)
    open_ = np.argwhere(grid != maze.WALL)
    assert len(open_) == 2 * cells**2 - 1 + extra
    assert len(_ref_dist(grid.tolist(), tuple(open_[0]))) == len(open_)  # connected
    edges = np.sum((grid[1:] != maze.WALL) & (grid[:-1] != maze.WALL))
    edges += np.sum((grid[:, 1:] != maze.WALL) & (grid[:, :-1] != maze.WALL))
    assert edges == len(open_) - 1 + extra  # a tree plus one edge per opening


def test_loops_make_several_paths_that_are_filtered_out():
  # With openings most S-G pairs have several shortest paths; the generator drops them.
  rng = np.random.default_rng(0)
  grid = maze.carve(rng, 4, 9)
  open_ = [tuple(int(v) for v in p) for p in np.argwhere(grid == maze.OPEN)]
  counts = {_ref_count_paths(grid.tolist(), open_[0], g) for g in open_[1:]}
  assert counts == {1, 2}


def test_shortest_path_oracle():
  grid = np.array([[1, 1, 1, 1, 1],
                   [1, 3, 2, 2, 1],
                   [1, 2, 1, 4, 1],
                   [1, 1, 1, 1, 1]])
  assert maze.shortest_path(grid, (1, 1), (2, 3)) == [(1, 1), (1, 2), (1, 3), (2, 3)]
  assert maze.shortest_path(grid, (1, 1), (1, 1)) == [(1, 1)]
  grid[1, 2] = maze.WALL
  assert maze.shortest_path(grid, (1, 1), (2, 3)) is None


def test_task_batches_and_determinism():
  task = tasks.get({"name": "maze", "cells": 3, "pool_size": 12, "min_path": 4})
  assert (task.side, task.seq_len, task.vocab_size, task.output_dim) == (7, 49, 6, 6)
  batch = _batch(task)
  pool = {x.tobytes(): t for x, t in zip(task.inputs.astype(np.int32), task.targets)}
  for x, t, w in zip(batch["inputs"], batch["targets"], batch["weights"]):
    assert x.tobytes() in pool
    np.testing.assert_array_equal(t, pool[x.tobytes()])
    np.testing.assert_array_equal(w, (x != maze.WALL).astype(np.float32))
    assert _check(x, t, 7) >= 4
  assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
  np.testing.assert_array_equal(_batch(task)["inputs"], batch["inputs"])
  again = jax.device_get(jax.jit(task.sample, static_argnums=1)(jax.random.key(0), 64))
  np.testing.assert_array_equal(again["targets"], batch["targets"])
  assert not np.array_equal(_batch(task, seed=1)["inputs"], batch["inputs"])
  same = maze.Maze(cells=3, pool_size=12, min_path=4)
  assert same == task and hash(same) == hash(task)
  np.testing.assert_array_equal(same.inputs, task.inputs)
  scored = maze.Maze(cells=3, pool_size=12, min_path=4, score_all=True)
  assert _batch(scored)["weights"].min() == 1.0


def test_augmented_batches():
  task = maze.Maze(cells=3, pool_size=6, augment=True)
  batch = _batch(task, batch_size=96)
  perms = maze.dihedral_perms(7)
  seen = set()
  for x, t in zip(batch["inputs"], batch["targets"]):
    _check(x, t, 7)
    match = [(i, k) for i, p in enumerate(task.inputs) for k in range(8)
             if np.array_equal(p[perms[k]], x)]
    assert match  # a rotation or reflection of a pool maze
    i, k = match[0]
    np.testing.assert_array_equal(task.targets[i][perms[k]], t)
    seen |= {k for _, k in match}
  assert seen == set(range(8))
  # The permutations are the reference's numpy transforms.
  grid = np.arange(49).reshape(7, 7)
  np.testing.assert_array_equal(grid.reshape(-1)[perms[1]], np.rot90(grid).reshape(-1))
  np.testing.assert_array_equal(grid.reshape(-1)[perms[7]],
                                np.fliplr(np.rot90(grid, k=1)).reshape(-1))


def test_held_out_pool_is_disjoint():
  task = maze.Maze(cells=2, pool_size=10, seed=4, augment=True)
  test = task.held_out()
  assert (test.split, test.augment, test.seed) == ("test", False, 4)
  assert test.held_out() == test
  train = {maze.canonical(x, 5) for x in task.inputs}
  assert not train & {maze.canonical(x, 5) for x in test.inputs}
  for x, t in zip(test.inputs, test.targets):
    _check(x, t, 5)
  # Tiny lattices repeat: without the exclusion the test seed would reuse training mazes.
  naive = maze.make_pool(task.test_seed, 10, 2)[0]
  assert train & {maze.canonical(x, 5) for x in naive}
  big = maze.Maze(cells=5, pool_size=50)
  assert not ({x.tobytes() for x in big.inputs}
              & {x.tobytes() for x in big.held_out().inputs})


@pytest.mark.parametrize("config", [
    {"cells": 1}, {"extra_openings": -1}, {"cells": 3, "extra_openings": 5},
    {"min_path": -1}, {"cells": 3, "min_path": 17}, {"pool_size": 0},
    {"seed": 5, "test_seed": 5}, {"split": "valid"}])
def test_bad_configs(config):
  with pytest.raises(ConfigError):
    tasks.get({"name": "maze", "pool_size": 1, **config})


def test_unreachable_min_path():
  with pytest.raises(RuntimeError, match="min_path"):
    maze.generate(np.random.default_rng(0), 2, 0, 7, max_attempts=5)
