"""Execute every notebook in notebooks/ and store it with its outputs (figures show on the hosting site).

python scripts/execute_notebooks.py [NAME.ipynb ...]

Each notebook runs top to bottom in a fresh kernel, in a scratch folder (the files
it writes stay out of the repository); the executed notebook replaces the stored
one. The tests execute the notebooks again and check that every stored code cell
has outputs (tests/integration/test_notebooks.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"


def execute(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as scratch:
        NotebookClient(
            notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": scratch}}
        ).execute()
    for cell in notebook.cells:  # no local paths or timings in stored metadata
        cell.metadata.pop("execution", None)
    nbformat.write(notebook, path)
    print(f"executed {path}")


def main(names: list[str]) -> int:
    paths = [FOLDER / name for name in names] if names else sorted(FOLDER.glob("*.ipynb"))
    for path in paths:
        execute(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
