"""Mutation testing of gradpath's core with mutmut, one module at a time (``make mutation``).

For each core module named in ``[tool.gradpath-mutation]`` of pyproject.toml (smallest first),
this stages a copy of the library (as ``src/gradpath``) and the tests under
``_build/mutation/<module>/``, writes a
``[tool.mutmut]`` section there that mutates only that module and runs only that module's tests
(``tests/`` alone: no notebook, no browser test), runs ``mutmut run`` in it, and prints the
share of mutants the tests killed. Survivors are listed by ``--survivors``; the ones judged
equivalent (no test can tell them from the original) are explained in tests/mutation-survivors.md.

    python tests/mutation/run.py                 # every module in the configured order
    python tests/mutation/run.py diagnosis init  # some modules
    python tests/mutation/run.py --report        # only print the scores of earlier runs
    python tests/mutation/run.py --survivors diagnosis   # each survivor's diff
    python tests/mutation/run.py --rerun init    # only the survivors, against today's tests
    python tests/mutation/run.py --sample 300 doctor   # a seeded random sample of the mutants
    python tests/mutation/run.py --resume doctor       # the sample's next chunks
    python tests/mutation/run.py --rerun --only NAME,NAME doctor   # some survivors again
    GRADPATH_MUTATION_TIMEOUT_MULTIPLIER=12 python tests/mutation/run.py --rerun doctor
                                                 # the timeouts again, with a longer limit

A module too large to run whole in the time at hand (the doctor: 3,322 mutants) can be measured
on a seeded random sample of its mutants (``--sample N [--seed S] [--chunk C]``, after a first
``run`` made the mutants; it can be stopped once they exist): the sample is drawn in a random
order and run C mutants per mutmut run, so the chunks finished when it is stopped are a random
sample too (mutmut runs the cheapest mutants of a run first). The report then gives the
sample's share with a 95% (Wilson) interval, strict (a timeout counts as survived) and with
timeouts counted as caught, which estimates the whole module's score; ``--rerun`` after a sample
reruns the sample's survivors and timeouts only.

Not part of ``make test`` or CI: a module takes minutes to an hour on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "_build" / "mutation"
KILLED = {1, 3, 37}           # mutmut's "killed" exit codes (3: pytest's internal error)
TIMEOUT = {24, -24, 36, 152, 255}
NOT_RUN = {None, 5, 33, 34}   # not checked, no tests, skipped


def settings() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["gradpath-mutation"]


def mutmut_table(conf: dict, module: str) -> str:
    tests = conf["tests"][module]
    multiplier = os.environ.get("GRADPATH_MUTATION_TIMEOUT_MULTIPLIER",
                                conf.get("timeout_multiplier", 4.0))
    lines = [
        "[tool.mutmut]",
        'source_paths = ["src/gradpath"]',   # src/: mutmut puts mutants/src first on sys.path
        f'only_mutate = ["src/gradpath/{module}.py"]',
        f"pytest_add_cli_args = {json.dumps(conf['pytest_args'])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(['tests/' + t for t in tests])}",
        f"timeout_multiplier = {float(multiplier)}",
        f"timeout_constant = {conf.get('timeout_constant', 10.0)}",
        "use_git_change_detection = false",
    ]
    return "\n".join(lines) + "\n"


def stage(conf: dict, module: str) -> Path:
    """A fresh copy of lib/, tests/ and a mutmut config that mutates ``module`` only."""
    work = WORK / module
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "lib" / "gradpath", work / "src" / "gradpath", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "mutation"))
    (work / "pyproject.toml").write_text(mutmut_table(conf, module))
    return work


def _env() -> dict[str, str]:
    """The environment without PYTHONPATH: the tests must import the mutated copy only."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["GRADPATH_PROGRESS"] = "0"
    return env


def run_module(conf: dict, module: str, jobs: int) -> int:
    work = stage(conf, module)
    env = _env()
    mutmut = Path(sys.executable).with_name("mutmut")
    print(f"== {module}: mutmut run (tests: {', '.join(conf['tests'][module])})", flush=True)
    code = subprocess.call([str(mutmut), "run", "--max-children", str(jobs)], cwd=work, env=env)
    return code


def _refresh_tests(conf: dict, module: str) -> None:
    """Copy today's tests and test list into an earlier staging (the mutants are kept)."""
    work = WORK / module
    for target in (work / "tests", work / "mutants" / "tests"):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "tests", target,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "mutation"))
    (work / "pyproject.toml").write_text(mutmut_table(conf, module))
    shutil.copy(work / "pyproject.toml", work / "mutants" / "pyproject.toml")


def _run_names(module: str, jobs: int, names: list[str]) -> int:
    """Run the named mutants against the staged tests, keeping every other earlier verdict."""
    meta = _meta(module)
    before = json.loads(meta.read_text())["exit_code_by_key"]
    mutmut = Path(sys.executable).with_name("mutmut")
    code = subprocess.call([str(mutmut), "run", "--max-children", str(jobs), *names],
                           cwd=WORK / module, env=_env())
    # a changed test selection makes mutmut forget every verdict; keep the earlier ones of the
    # mutants not run again (tests were only added since)
    data = json.loads(meta.read_text())
    rerun = set(names)
    for name, old in before.items():
        if name not in rerun and data["exit_code_by_key"].get(name) is None:
            data["exit_code_by_key"][name] = old
    meta.write_text(json.dumps(data))
    return code


def rerun_survivors(conf: dict, module: str, jobs: int, only: list[str] | None = None) -> int:
    """Run the survivors of an earlier run again against the current tests (no restaging of the
    mutants: the library is unchanged, only tests were added). After a sample, only the
    sample's survivors (and timeouts, to classify them); ``only`` narrows them to the names
    given."""
    c = counts(module)
    if c is None:
        print(f"{module}: no earlier run; run it first")
        return 1
    _refresh_tests(conf, module)
    names = c["survived"] + c["not run"]
    sample_path = WORK / module / "sample.json"
    if sample_path.exists():
        sample = json.loads(sample_path.read_text())
        done = set(sample["done"])
        names = [n for n in c["survived"] + c["timeout"] if n in done]
    if only is not None:
        unknown = sorted(set(only) - set(names))
        if unknown:
            print(f"{module}: not survivors of the last run: {', '.join(unknown)}")
            return 1
        names = [n for n in names if n in set(only)]
    print(f"== {module}: {len(names)} survivors again", flush=True)
    if not names:
        return 0
    return _run_names(module, jobs, names)


def run_sample(conf: dict, module: str, jobs: int, size: int, seed: int, chunk: int,
               resume: bool = False) -> int:
    """Run a seeded random sample of ``size`` of the module's mutants against today's tests.

    mutmut runs the mutants it is given cheapest first, so a run stopped early leaves a biased
    subset. The sample is therefore drawn in a random order and run in chunks of ``chunk``
    mutants, one mutmut run each: the chunks finished when time runs out are themselves a
    seeded random sample. ``sample.json`` keeps the order and the names that got a verdict;
    every verdict of the sample is cleared first (an earlier run's verdicts came from other
    tests). ``resume`` continues the sample in ``sample.json`` after its last whole chunk (the
    verdicts it has are kept: tests are only added between runs)."""
    meta = _meta(module)
    if not meta.exists():
        print(f"{module}: no mutants yet; run it first (a run can be stopped once they exist)")
        return 1
    _refresh_tests(conf, module)
    data = json.loads(meta.read_text())
    names = sorted(data["exit_code_by_key"])
    path = WORK / module / "sample.json"
    if resume:
        sample = json.loads(path.read_text())
        order, chunk = sample["names"], sample["chunk"]
        first = len(sample["done"])
        for name in order[first:]:
            data["exit_code_by_key"][name] = None
        print(f"== {module}: the sample (seed {sample['seed']}) resumed after its "
              f"{first} mutants with a verdict", flush=True)
    else:
        order = random.Random(seed).sample(names, min(size, len(names)))
        for name in order:
            data["exit_code_by_key"][name] = None
        sample = {"seed": seed, "names": order, "chunk": chunk, "done": []}
        first = 0
        print(f"== {module}: a sample of {len(order)} of {len(names)} mutants (seed {seed}), "
              f"in chunks of {chunk}", flush=True)
    meta.write_text(json.dumps(data))
    path.write_text(json.dumps(sample))
    code = 0
    for start in range(first, len(order), chunk):
        part = order[start:start + chunk]
        code = _run_names(module, jobs, part) or code
        verdicts = json.loads(meta.read_text())["exit_code_by_key"]
        sample["done"] += [n for n in part if verdicts.get(n) is not None]
        path.write_text(json.dumps(sample))
        print(f"== {module}: {len(sample['done'])} of the sample have a verdict", flush=True)
        sample_report(module)
    return code


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a share k/n."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def sample_report(module: str) -> None:
    """The sample's share caught, with its 95% Wilson interval: leniently (a timeout counts as
    caught, as in the module table) and strictly (a timeout counts as survived)."""
    path = WORK / module / "sample.json"
    c = counts(module)
    if not path.exists() or c is None:
        return
    sample = json.loads(path.read_text())
    names = set(sample["done"])
    killed = sum(1 for n in c["killed"] if n in names)
    timeout = sum(1 for n in c["timeout"] if n in names)
    survived = sum(1 for n in c["survived"] if n in names)
    checked = killed + timeout + survived
    print(f"{module:<12}sample (seed {sample['seed']}): {checked} of {len(sample['names'])} run: "
          f"{killed} killed, {timeout} timed out, {survived} survived")
    for label, caught in (("timeouts caught", killed + timeout), ("strict", killed)):
        low, high = _wilson(caught, checked)
        print(f"{'':<12}{label}: {caught}/{checked} = "
              f"{caught / checked if checked else math.nan:.1%} (95% Wilson interval "
              f"{low:.1%} to {high:.1%})")


def _meta(module: str) -> Path:
    return WORK / module / "mutants" / "src" / "gradpath" / f"{module}.py.meta"


def counts(module: str) -> dict[str, list[str]] | None:
    meta = _meta(module)
    if not meta.exists():
        return None
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    out: dict[str, list[str]] = {"killed": [], "survived": [], "timeout": [], "not run": []}
    for name, code in codes.items():
        if code in KILLED:
            out["killed"].append(name)
        elif code in TIMEOUT:
            out["timeout"].append(name)
        elif code in NOT_RUN:
            out["not run"].append(name)
        else:
            out["survived"].append(name)
    return out


def report(modules: list[str]) -> None:
    print(f"{'module':<12}{'killed':>8}{'total':>8}{'share':>9}  survived  timeout  no test")
    for module in modules:
        c = counts(module)
        if c is None:
            print(f"{module:<12}  (not run)")
            continue
        # a timeout is a caught mutant (the tests noticed it hang); "no test" counts as survived
        killed = len(c["killed"]) + len(c["timeout"])
        total = sum(len(v) for v in c.values())
        share = killed / total if total else float("nan")
        print(f"{module:<12}{killed:>8}{total:>8}{share:>9.1%}  {len(c['survived']):>8}"
              f"  {len(c['timeout']):>7}  {len(c['not run']):>7}")
        sample_report(module)


def survivors(module: str) -> None:
    """Print the diff of every mutant of ``module`` that no test caught (one process)."""
    c = counts(module)
    if c is None:
        print(f"{module}: not run")
        return
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    sample_path = WORK / module / "sample.json"
    sample = set(json.loads(sample_path.read_text())["names"]) if sample_path.exists() else None
    os.chdir(WORK / module)
    path = Path("src") / "gradpath" / f"{module}.py"
    for status in ("survived", "not run"):
        for name in c[status]:
            if sample is not None and name not in sample:
                continue
            print(f"# {name}: {status}")
            try:
                print(get_diff_for_mutant(name, path=path))
            except Exception as exc:  # noqa: BLE001 - a diff that cannot be shown is reported
                print(f"(no diff: {exc})")


def main() -> None:
    conf = settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=conf["modules"])
    parser.add_argument("--report", action="store_true", help="only print earlier scores")
    parser.add_argument("--survivors", action="store_true", help="show each survivor's diff")
    parser.add_argument("--resume", action="store_true",
                        help="continue the last sample after its last whole chunk")
    parser.add_argument("--only", default=None, metavar="NAMES",
                        help="with --rerun: only these mutants (comma-separated names)")
    parser.add_argument("--rerun", action="store_true",
                        help="run only the earlier survivors again, against the current tests")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel")
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="run a seeded random sample of N mutants against the current tests")
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    parser.add_argument("--chunk", type=int, default=50,
                        help="mutants per mutmut run of a sample (default 50)")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in conf["tests"]]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; valid choices are {', '.join(conf['modules'])}")
    if args.survivors:
        for module in args.modules:
            survivors(module)
        return
    if args.sample or args.resume:
        for module in args.modules:
            run_sample(conf, module, args.jobs, args.sample, args.seed, args.chunk, args.resume)
    elif args.rerun:
        for module in args.modules:
            rerun_survivors(conf, module, args.jobs,
                            args.only.split(",") if args.only else None)
    elif not args.report:
        for module in args.modules:
            run_module(conf, module, args.jobs)
    report(args.modules)


if __name__ == "__main__":
    main()
