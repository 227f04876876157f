"""The figures in img/ are what scripts/make_figures.py draws: none is pasted in."""

import importlib.util

import contract

spec = importlib.util.spec_from_file_location(
    "make_figures", contract.ROOT / "scripts" / "make_figures.py"
)
make_figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_figures)


def test_committed_figures_are_up_to_date(tmp_path):
    for path in make_figures.write_all(tmp_path):
        committed = contract.ROOT / "img" / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"img/{path.name} differs from what scripts/make_figures.py draws; rerun it"
        )


def test_every_image_in_img_is_drawn_by_the_script():
    drawn = set(make_figures.FIGURES)
    assert {p.name for p in (contract.ROOT / "img").iterdir()} == drawn
