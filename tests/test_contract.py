"""The book's spine: every algorithm block has an implementation and a test, and back."""

from pathlib import Path

import contract
import pytest


def test_the_book_keeps_the_contract():
    blocks = contract.chapter_blocks()
    assert blocks, "no prf:algorithm blocks found under chapters/"
    problems = contract.violations(
        blocks, contract.package_implementations(), contract.marked_tests()
    )
    assert not problems, "\n".join(problems)


# The checks themselves, on small made-up inputs: each kind of break must be caught.

CHAPTER = """
# A chapter

````{prf:algorithm} Gradient descent
:label: alg-gd

**Implementation:** {py:func}`llmtrain.fake.gd_step`

1. step
````
"""


def fake_implementation():
    """A step.

    Implements :prf:ref:`alg-gd`.
    """


def gd_step():
    """Unrelated."""


def _check(text, implementations, tests):
    blocks = contract.parse_blocks(text, contract.ROOT / "chapters" / "fake.md")
    return contract.violations(blocks, implementations, tests)


def _test(labels, source="def test_it():\n    gd_step()"):
    return contract.MarkedTest(Path("tests/test_fake.py"), "test_it", labels, source)


def test_parse_blocks_reads_label_title_and_implementation():
    (block,) = contract.parse_blocks(CHAPTER, Path("x.md"))
    assert (block.title, block.label, block.implementations) == (
        "Gradient descent",
        "alg-gd",
        ["llmtrain.fake.gd_step"],
    )


def test_a_complete_mapping_passes():
    impls = {"alg-gd": {"llmtrain.fake.gd_step": fake_implementation}}
    assert _check(CHAPTER, impls, [_test(["alg-gd"])]) == []


@pytest.mark.parametrize(
    ("text", "impls", "tests", "expected"),
    [
        (CHAPTER.replace(":label: alg-gd\n", ""), {}, [], "has no :label:"),
        (CHAPTER.replace("alg-gd", "GD"), {}, [], "not of the form"),
        (CHAPTER.replace("**Implementation:**", "Code:"), {}, [], "no '**Implementation:**"),
        (CHAPTER, {}, [_test(["alg-gd"])], "does not say 'Implements"),
        (
            CHAPTER,
            {
                "alg-gd": {"llmtrain.fake.gd_step": fake_implementation},
                "alg-other": {"llmtrain.fake.other": gd_step},
            },
            [_test(["alg-gd"])],
            "no chapter has that block",
        ),
        (
            CHAPTER,
            {
                "alg-gd": {
                    "llmtrain.fake.gd_step": fake_implementation,
                    "llmtrain.fake.GD": gd_step,
                }
            },
            [_test(["alg-gd"])],
            "does not name it",
        ),
        (CHAPTER, {"alg-gd": {"llmtrain.fake.gd_step": fake_implementation}}, [], "has no test"),
        (
            CHAPTER,
            {"alg-gd": {"llmtrain.fake.gd_step": fake_implementation}},
            [_test(["alg-gd"], "def test_it():\n    assert True")],
            "has no test",
        ),
        (
            CHAPTER,
            {"alg-gd": {"llmtrain.fake.gd_step": fake_implementation}},
            [_test(["alg-gd"]), _test(["alg-typo"])],
            "unknown 'alg-typo'",
        ),
    ],
    ids=[
        "no-label",
        "bad-label",
        "no-implementation-line",
        "docstring-does-not-name-label",
        "implementation-without-block",
        "block-does-not-name-implementation",
        "no-test",
        "test-does-not-call-implementation",
        "test-marked-for-unknown-label",
    ],
)
def test_each_kind_of_break_is_reported(text, impls, tests, expected):
    problems = _check(text, impls, tests)
    assert any(expected in p for p in problems), problems
