"""The README's CI recipes work as written.

Each workflow has a trigger, installs a pinned CPU torch and shapecli from its repository
pinned to a revision (shapecli is not on PyPI), and every ``shapecli`` command in it is
one the CLI accepts. The pull-request comment recipe has the history and the right it
needs, and its script runs here, in a clone, against a stand-in for ``gh``. The
pre-commit recipe (with the other hook in docs/commands.md) names the hooks that
``.pre-commit-hooks.yaml`` defines, at a revision that exists.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CONFIGS, ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
(RECIPES,) = re.findall(r"^## CI recipes\n(.*?)(?=^## )", README, re.S | re.M)
YAML = [yaml.safe_load(body) for body in re.findall(r"^```yaml\n(.*?)^```", RECIPES, re.S | re.M)]
WORKFLOWS = [doc for doc in YAML if isinstance(doc, dict) and "jobs" in doc]
PRE_COMMIT = [doc for doc in YAML if isinstance(doc, dict) and "repos" in doc]
HOOKS = {hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
(TORCH_PINNED,) = re.findall(r"^TORCH_PINNED=(\S+)$", (ROOT / ".ci" / "run").read_text(), re.M)


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def commands(workflow: dict[str, Any]) -> list[list[str]]:
    """Every command line of every ``run:`` step, as words, up to a redirection or a pipe."""
    lines = [line for step in steps(workflow) for line in step.get("run", "").splitlines()]
    return [words(line) for line in lines if line.strip()]


def words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found = list(lexer)
    ends = [i for i, word in enumerate(found) if set(word) <= set("();<>|&")]
    return found[: ends[0]] if ends else found


def test_the_readme_has_the_recipes() -> None:
    assert len(WORKFLOWS) == 2 and len(PRE_COMMIT) == 1


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w["name"] for w in WORKFLOWS])
def test_a_workflow_runs_on_an_event(workflow: dict[str, Any]) -> None:
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 readers read `on` as true
    assert trigger, "without `on:` GitHub never runs the workflow"
    assert "pull_request" in trigger


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w["name"] for w in WORKFLOWS])
def test_a_workflow_installs_a_pinned_cpu_torch_then_shapecli_from_its_repository(
    workflow: dict[str, Any],
) -> None:
    installs = [c[2:] for c in commands(workflow) if c[:2] == ["pip", "install"]]
    assert installs == [
        [f"torch=={TORCH_PINNED}", "--index-url", "https://download.pytorch.org/whl/cpu"],
        ["shapecli @ git+https://example.org/your/shapecli@COMMIT"],
    ]
    assert "example.org/your/shapecli" in README and "`COMMIT`" in RECIPES  # both explained


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w["name"] for w in WORKFLOWS])
def test_every_shapecli_command_of_a_workflow_is_one_the_cli_accepts(
    workflow: dict[str, Any],
) -> None:
    ran = [c[1:] for c in commands(workflow) if c[0] == "shapecli"]
    assert ran
    for argv in ran:
        accepts(argv)


def accepts(argv: list[str]) -> None:
    """Parse ``shapecli ARGV`` as the CLI would, without running it."""
    import typer

    from shapecli.cli import app, click

    group = typer.main.get_command(app)
    context = click.Context(group, info_name="shapecli")
    command = group.get_command(context, argv[0])
    assert command is not None, f"no command {argv[0]}"
    command.make_context(argv[0], argv[1:], parent=context)


def test_the_checker_refuses_what_the_cli_refuses() -> None:
    from shapecli.cli import click

    with pytest.raises(click.exceptions.UsageError):
        accepts(["diff", "a.yaml", "b.yaml", "-f", "markdwn"])
    with pytest.raises(click.exceptions.UsageError):
        accepts(["lint", "--jobz", "2", "configs/"])


COMMENT = next(w for w in WORKFLOWS if any(c[:3] == ["gh", "pr", "comment"] for c in commands(w)))


def test_the_comment_recipe_has_the_base_branch_and_the_right_to_comment() -> None:
    assert COMMENT["permissions"]["pull-requests"] == "write"
    (checkout,) = [s for s in steps(COMMENT) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["fetch-depth"] == 0  # the base branch's history, not one commit


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_comment_recipe_comments_what_the_pull_request_changes(tmp_path: Path) -> None:
    """Its script, in a clone of a repository whose pull request changes the model."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    upstream, clone, bin = tmp_path / "upstream", tmp_path / "clone", tmp_path / "bin"
    (upstream / "configs").mkdir(parents=True)
    subprocess.run([*git, "init", "-q", str(upstream)], check=True)
    (upstream / "configs" / "model.yaml").write_text((CONFIGS / "mlp.yaml").read_text())
    subprocess.run([*git, "-C", str(upstream), "add", "."], check=True)
    subprocess.run([*git, "-C", str(upstream), "commit", "-qm", "base"], check=True)
    subprocess.run([*git, "-C", str(upstream), "checkout", "-qb", "change"], check=True)
    (upstream / "configs" / "model.yaml").write_text((CONFIGS / "partial.yaml").read_text())
    subprocess.run([*git, "-C", str(upstream), "commit", "-qam", "wider"], check=True)
    subprocess.run([*git, "clone", "-q", "-b", "change", str(upstream), str(clone)], check=True)
    bin.mkdir()  # `gh` stands in: it keeps what it was asked to post
    gh = bin / "gh"
    gh.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/gh-args\ncp "$5" {tmp_path}/comment\n')
    gh.chmod(0o755)
    (step,) = [s for s in steps(COMMENT) if "gh pr comment" in s.get("run", "")]
    env = {  # the values GitHub gives the step's `env:` for pull request 7 into main
        **os.environ,
        **{k: str(v) for k, v in step.get("env", {}).items()},
        "BASE": "main",
        "PR": "7",
        "GH_TOKEN": "token",
        "PATH": os.pathsep.join([str(bin), str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "gh-args").read_text().split() == [
        "pr",
        "comment",
        "7",
        "--body-file",
        "diff.md",
    ]
    comment = (tmp_path / "comment").read_text()
    assert "out_features 10 → 128" in comment and "the models differ" in comment


def test_the_pre_commit_recipe_names_hooks_the_repository_defines() -> None:
    (config,) = PRE_COMMIT
    ((repo,),) = [config["repos"]]
    assert repo["repo"] == "https://example.org/your/shapecli"
    named = [hook["id"] for hook in repo["hooks"]]
    commands_page = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    (in_pre_commit,) = re.findall(r"^### In pre-commit\n(.*?)(?=^#)", commands_page, re.S | re.M)
    for body in re.findall(r"^```yaml\n(.*?)^```", in_pre_commit, re.S | re.M):
        named += [hook["id"] for hook in yaml.safe_load(body)]  # the other hook, in full
    assert set(named) == set(HOOKS)  # both hooks are shown, and only they exist
    for hook in HOOKS.values():
        assert hook["entry"].startswith("shapecli ")
        accepts([*hook["entry"].split()[1:], "configs/mlp.yaml"])  # pre-commit adds the files


@pytest.mark.process
def test_the_pre_commit_recipe_names_a_revision_that_exists() -> None:
    """``rev:`` is the placeholder the README explains, or a tag or commit of this one."""
    ((repo,),) = [PRE_COMMIT[0]["repos"]]
    rev = str(repo["rev"])
    if rev == "COMMIT":
        assert "`rev:` must name a commit" in RECIPES
        return
    found = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    assert found.returncode == 0, f"rev: {rev} names nothing in this repository"
