"""Page scripts of the leaderboard app (run by Streamlit via st.navigation, not imported)."""
