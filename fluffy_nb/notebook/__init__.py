"""fluffy_nb.notebook: the Jupyter layer (magics, live views, widget human-in-the-loop forms)."""
