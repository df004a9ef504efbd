"""Who may change a run: the hosted demo's owner rule, in one place.

In the demo (``STUDIO_DEMO=1``, :attr:`core.limits.Limits.own_runs_only`) every visitor sees
every run, but may delete, rename, tag, cancel and resume only the runs their own session
started. The rule is enforced by the run store and the job runner themselves
(:meth:`core.runs.RunStore.delete`, ``rename``, ``set_tags``; :meth:`core.runs.JobRunner.cancel`,
``submit_existing``), all through :func:`authorize`, so no page can forget it. The command
line and an operator (``owner=None``) are never refused.
"""

from __future__ import annotations

from typing import Any, Mapping

from core.errors import StudioError
from core.runs.run import Run

#: What the rule covers, and how the refusal names it ("you can ... only your own runs").
OWNER_ACTIONS = {
    "delete": "delete",
    "rename": "rename",
    "tag": "change the tags of",
    "cancel": "cancel",
    "resume": "resume",
}


def check_owner(meta: Mapping[str, Any], owner: str | None, action: str) -> None:
    """In the hosted demo, refuse to ``action`` someone else's run.

    Args:
        meta: the run's meta.json (its ``owner``); ``{}`` for a damaged one.
        owner: who asks; None means the command line or an operator, never refused.
        action: a key of :data:`OWNER_ACTIONS` (or a verb, used as it is).

    Raises:
        StudioError: when the demo is on and the run belongs to another session.
    """
    from core.limits import current_limits

    if owner is None or not current_limits().own_runs_only:
        return
    if meta.get("owner") != owner:
        verb = OWNER_ACTIONS.get(action, action)
        raise StudioError(f"this run was started by someone else, and in this demo you can {verb} only your own runs")


def authorize(store: Any, run_id: str, owner: str | None, action: str) -> Run:
    """The run, after checking that ``owner`` may ``action`` it (:func:`check_owner`).

    A run whose meta.json cannot be read counts as nobody's: in the demo only the command
    line may touch it.

    Args:
        store: the :class:`core.runs.store.RunStore` (anything with ``get(run_id)``).
        run_id: the run.
        owner: who asks (a browser session or signed-in user), or None.
        action: a key of :data:`OWNER_ACTIONS`.

    Returns:
        The run.

    Raises:
        StudioError: for an unknown run, or when the demo refuses it.
    """
    run = store.get(run_id)
    try:
        meta = run.meta()
    except StudioError:
        meta = {}
    check_owner(meta, owner, action)
    return run
