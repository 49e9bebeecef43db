"""``papermill --engine atskit``: papermill's own engine (nbclient), every save of the executed notebook
redacted, so the ``.ipynb`` papermill writes holds no secret, not even in the injected parameters cell or
``metadata.papermill.parameters`` (the kernel still gets the real values). Registered under the
``papermill.engine`` entry point in pyproject.toml."""

from __future__ import annotations

import copy

from papermill.engines import NBClientEngine, NotebookExecutionManager, catch_nb_assignment
from papermill.iorw import write_ipynb

from helpers.redaction import redact_notebook


class _RedactingManager(NotebookExecutionManager):
    """Papermill's execution record, written out redacted (a redacted copy: the run goes on as it is)."""

    @catch_nb_assignment
    def save(self, **kwargs) -> None:
        if self.output_path:
            clean = copy.deepcopy(self.nb)
            redact_notebook(clean)
            write_ipynb(clean, self.output_path)
        self.last_save_time = self.now()


class RedactingEngine(NBClientEngine):
    """nbclient execution as papermill runs it; saves are redacted, and so is the notebook returned
    (papermill writes that one last, with its error cell if a cell failed)."""

    @classmethod
    def execute_notebook(
        cls,
        nb,
        kernel_name,
        output_path=None,
        progress_bar=True,
        log_output=False,
        autosave_cell_every=30,
        **kwargs,
    ):
        manager = _RedactingManager(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        manager.notebook_start()
        try:
            cls.execute_managed_notebook(manager, kernel_name, log_output=log_output, **kwargs)
        finally:
            manager.cleanup_pbar()
            manager.notebook_complete()
            redact_notebook(manager.nb)
        return manager.nb
