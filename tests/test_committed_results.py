"""The committed results store: every record valid, none stale (DESIGN.md "A result is a JSON record").

A record goes stale when its registry entry's resolved configuration changes; re-run it with the
command printed below (or delete it) and commit the new record.
"""

from __future__ import annotations

from normbook.experiments.provenance import REPO_DIR
from normbook.experiments.results import stale_records
from normbook.experiments.store import ResultsError, read_record, record_files

COMMITTED = REPO_DIR / "results"  # the repository's own store, whatever $NORMBOOK_RESULTS says


def test_every_committed_record_follows_the_schema():
    problems = []
    for path in record_files(COMMITTED):
        try:
            read_record(path)
        except ResultsError as err:
            problems.append(str(err))
    assert not problems, "invalid records:\n" + "\n".join(problems)


def test_no_committed_record_is_stale():
    stale = stale_records(COMMITTED)
    lines = [
        f"{s.path.relative_to(REPO_DIR)}: {s.reason}"
        f"  -> normbook run {s.experiment_id} --scale {s.scale}"
        for s in stale
    ]
    assert not stale, f"{len(stale)} stale record(s):\n" + "\n".join(lines)


def test_every_file_in_the_store_is_a_record():
    """Stray files (temp files of a crashed write, notes) do not belong in results/<scale>/<id>/."""
    records = set(record_files(COMMITTED))
    files = COMMITTED.rglob("*") if COMMITTED.is_dir() else ()
    stray = [
        str(p.relative_to(REPO_DIR))
        for p in files
        if p.is_file() and p not in records and p.name not in ("README.md", ".gitkeep")
    ]
    assert not stray, "files in results/ that are not records:\n" + "\n".join(stray)


def test_every_small_grid_is_committed():
    """The book's static twins and reduced tables read `results/small/`: every grid point × seed
    of every entry's `small` scale has a fresh committed record, so no build computes one."""
    from normbook.experiments.registry import default_registry
    from normbook.experiments.results import cache_status

    incomplete = []
    for entry in default_registry():
        if "small" not in entry.scales:
            continue
        status = cache_status(entry, "small", COMMITTED)
        done, expected = status.rstrip("!").split("/")
        if status.endswith("!") or done != expected:
            incomplete.append(f"{entry.id}: {status}  -> normbook run {entry.id} --scale small")
    assert not incomplete, "small grids missing from results/:\n" + "\n".join(incomplete)
