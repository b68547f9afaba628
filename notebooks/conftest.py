"""pytest settings for running these notebooks under nbval (``pytest --nbval-lax notebooks/``).

Headless runs have nobody to click the human-in-the-loop forms, so the notebooks answer from
a script when ``FLUFFY_NB_AUTOANSWER=1`` (see notebook 06). Kernels inherit this process's
environment, so setting it here, before nbval starts any kernel, switches every notebook to
its scripted answers. In JupyterLab the variable is unset and the real forms appear.
"""

import os

os.environ.setdefault("FLUFFY_NB_AUTOANSWER", "1")
