"""``--update-golden`` lists the golden files it rewrote and fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py").read_text(encoding="utf-8")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A copy of the suite's conftest, one golden file and one test that checks it."""
    pytester.makeconftest(CONFTEST)
    (pytester.path / "golden").mkdir()
    (pytester.path / "golden" / "same.txt").write_text("same\n", encoding="utf-8")
    (pytester.path / "golden" / "out.txt").write_text("old\nkept\n", encoding="utf-8")
    pytester.makepyfile(
        test_out="""
        def test_same(golden):
            golden("same.txt", "same\\n")

        def test_out(golden):
            golden("out.txt", "new\\nkept\\n")
        """
    )
    return pytester


def test_a_changed_golden_file_fails_without_the_flag(project: pytest.Pytester) -> None:
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert "output differs from" in result.stdout.str()
    assert (project.path / "golden" / "out.txt").read_text() == "old\nkept\n"


def test_update_golden_rewrites_lists_and_fails(project: pytest.Pytester) -> None:
    result = project.runpytest("-p", "no:cacheprovider", "--update-golden")
    result.assert_outcomes(passed=1, failed=1)  # the unchanged file is not rewritten
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*golden files rewritten*", "tests/golden/out.txt (2 lines changed)"]
    )
    assert (project.path / "golden" / "out.txt").read_text() == "new\nkept\n"
    # A second run finds the rewritten file current: it passes.
    project.runpytest("-p", "no:cacheprovider", "--update-golden").assert_outcomes(passed=2)
