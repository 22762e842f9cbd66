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


def _drawn(renderer_class, texts, prop, antialiased=True):
    import numpy as np

    renderer = renderer_class(300, 80, 150)
    gc = renderer.new_gc()
    gc.set_foreground("#1f2933")
    gc.set_antialiased(antialiased)
    for i, text in enumerate(texts * 2):  # each text twice: the second draw uses the kept glyphs
        renderer.draw_text(gc, 3.3 + 37 * (i % 8), 20.6 + 7 * (i // 8), text, prop, 0.0)
    renderer.draw_text(gc, 150.2, 60.4, texts[0], prop, 30.0)  # rotated: matplotlib's own way
    return np.asarray(renderer.buffer_rgba()).copy()


@pytest.mark.parametrize("antialiased", [True, False])
def test_the_fast_text_path_draws_matplotlibs_pixels(antialiased):
    import numpy as np
    from matplotlib.backends.backend_agg import RendererAgg

    prop = font_manager.FontProperties(family=["Noto Sans", "Noto Sans CJK SC"], size=6.5)
    texts = ["Procurement", "60 h", "-12.5k", "收入增长", "R&D 2026"]  # 收入增长: fallback glyphs
    charts._Renderer._layouts.clear()
    charts._Renderer._glyphs.clear()
    # The second draw of each text lands a whole number of pixels away from the first (37 px, one
    # row down): its glyph images are the kept ones, moved.
    fast = _drawn(charts._Renderer, texts, prop, antialiased)
    assert np.array_equal(fast, _drawn(RendererAgg, texts, prop, antialiased))
    assert fast[..., :3].min() < 128  # something was drawn
    kept = {key[0] for key in charts._Renderer._layouts}
    assert not charts._FAST_TEXT or ("Procurement" in kept and "收入增长" not in kept)
    assert not charts._FAST_TEXT or 0 < len(charts._Renderer._glyphs) < sum(map(len, texts))
