"""Charts use the document's fonts even when matplotlib's font list predates their installation."""
from __future__ import annotations

import pytest
from matplotlib import font_manager

from reporter.render import charts


@pytest.fixture
def stale_font_list(monkeypatch):
    """matplotlib's font list as it was before Noto Sans (Latin) was installed."""
    manager = font_manager.fontManager
    monkeypatch.setattr(manager, "ttflist", [f for f in manager.ttflist if f.name != "Noto Sans"])
    font_manager.FontManager._findfont_cached.cache_clear()  # findfont remembers its answers
    charts.register_system_fonts.cache_clear()
    yield manager
    charts.register_system_fonts.cache_clear()
    font_manager.FontManager._findfont_cached.cache_clear()


def test_a_family_installed_after_matplotlib_made_its_font_list_is_added(stale_font_list):
    latin = font_manager.FontProperties(family=["Noto Sans"])
    assert "NotoSans-" not in font_manager.findfont(latin, fallback_to_default=True)
    assert charts.register_system_fonts() == ("Noto Sans",)
    font_manager.FontManager._findfont_cached.cache_clear()
    assert "NotoSans-Regular" in font_manager.findfont(latin, fallback_to_default=False)


def test_nothing_is_added_when_the_list_is_current():
    charts.register_system_fonts.cache_clear()
    assert charts.register_system_fonts() == ()

