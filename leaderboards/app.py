"""The leaderboard app: ``streamlit run leaderboards/app.py -- --results DIR`` (or
``bench leaderboard``). Pages: Leaderboard, Robustness, Samples, Protocol, About.

Navigation sits at the top and each page's controls above its content, so the tables get the
window's whole width (no sidebar)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
VIEWS = HERE / "views"

st.set_page_config(page_title="synthbench leaderboard", layout="wide", initial_sidebar_state="collapsed")

PAGES = [
    st.Page(VIEWS / "leaderboard.py", title="Leaderboard", icon=":material/leaderboard:", default=True),
    st.Page(VIEWS / "robustness.py", title="Robustness", icon=":material/trending_down:", url_path="robustness"),
    st.Page(VIEWS / "samples.py", title="Samples", icon=":material/image:", url_path="samples"),
    st.Page(VIEWS / "protocol.py", title="Protocol", icon=":material/description:", url_path="protocol"),
    st.Page(VIEWS / "about.py", title="About", icon=":material/info:", url_path="about"),
]

st.navigation(PAGES, position="top").run()
