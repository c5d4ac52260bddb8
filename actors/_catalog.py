"""The workflows an engine knows: compiled graphs, stored definitions, registered ids.

Graphs are compiled once per workflow version and trigger and shared by every
execution of it. An execution restored from the store gets the graph of the exact
definition it started on (by content hash), loaded once however many executions
ask at the same time. ``workflow.execute`` finds workflows by id among those
registered here, then among those stored. Workflows registered on purpose are
served: the highest version of each answers its webhook requests.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from prana._compiler import ExecutionGraph, compile_workflow, definition_hash, triggers_of
from prana._errors import PranaError, Problem
from prana._limits import DEFAULT_LIMITS, Limits
from prana._loading import WorkflowSource, load_workflow, workflow_to_dict
from prana._model import Workflow
from prana._records import StoredExecution
from prana._registry import ActionRegistry
from prana._triggers import TriggerError, event_triggers, webhook_path, webhook_routes
from prana._webhooks import WebhookRoute, webhook_route_of
from prana.storage import Store, StoredWorkflow

logger = logging.getLogger("prana.engine")


class Catalog:
    """Compiled and known workflows of one engine."""

    def __init__(self, actions: ActionRegistry, limits: Limits = DEFAULT_LIMITS) -> None:
        self.actions = actions
        self.limits = limits
        self.registered: dict[str, dict[int, Workflow]] = {}
        self._graphs: dict[tuple[str, int, str | None], tuple[Workflow, ExecutionGraph]] = {}
        self._graphs_by_hash: dict[tuple[str, str], ExecutionGraph] = {}
        self._saved_hashes: set[str] = set()
        self._definitions: dict[str, StoredWorkflow] = {}
        self._loading: dict[str, anyio.Event] = {}
        # The workflows the engine serves (registered on purpose): the highest version
        # of each id answers its webhook requests and runs its schedules.
        self.served: dict[str, Workflow] = {}
        # The definitions served because they are kept in the store: id to hash.
        self._kept: dict[str, str] = {}
        # What answers each webhook request: made once, when its workflow is served.
        self._routes: dict[tuple[str, str], WebhookRoute] = {}
        # Event name to the served workflows (id, trigger key) that start on it.
        self._listeners: dict[str, list[tuple[str, str]]] = {}

    def register(self, workflow: Workflow | WorkflowSource) -> Workflow:
        """Know ``workflow`` by its id and version."""
        if not isinstance(workflow, Workflow):
            workflow = load_workflow(workflow, actions=self.actions, limits=self.limits)
        self.registered.setdefault(workflow.id, {})[workflow.version] = workflow
        return workflow

    def checked(self, workflow: Workflow | WorkflowSource) -> Workflow:
        """``workflow`` loaded and compiled for each of its triggers, without
        registering it. Raises :class:`WorkflowValidationError`."""
        if not isinstance(workflow, Workflow):
            workflow = load_workflow(workflow, actions=self.actions, limits=self.limits)
        for key in triggers_of(workflow, self.actions):
            self.compile(workflow, trigger=key)
        return workflow

    def warnings(self, workflow: Workflow) -> tuple[Problem, ...]:
        """What is questionable in ``workflow``, checked (see :meth:`checked`): the
        nodes no trigger leads to, the same in each trigger's graph."""
        triggers = triggers_of(workflow, self.actions)
        return self.compile(workflow, trigger=triggers[0]).warnings if triggers else ()

    def serve(self, workflow: Workflow | WorkflowSource) -> tuple[Workflow, bool]:
        """Register ``workflow`` and answer its triggers, unless a higher version of it
        is served already; return it and whether it is now served. Raises
        :class:`WorkflowValidationError` if any of its triggers does not compile, and
        :class:`TriggerError` if another workflow answers one of its webhooks."""
        workflow = self.register(self.checked(workflow))
        current = self.served.get(workflow.id)
        if current is not None and current.version > workflow.version:
            return workflow, False
        routes = webhook_routes(workflow, self.actions)
        for (method, path), key in routes.items():
            other = self._routes.get((method, path))
            if other is not None and other.workflow.id != workflow.id:
                raise TriggerError(
                    f"webhook {method} /{path} of workflow {workflow.id!r} (trigger {key!r}) "
                    f"is answered by workflow {other.workflow.id!r} already; give one of them "
                    "another path"
                )
        self._routes = {
            route: to for route, to in self._routes.items() if to.workflow.id != workflow.id
        }
        self._routes.update(
            {route: webhook_route_of(workflow, key) for route, key in routes.items()}
        )
        for name, listening in list(self._listeners.items()):
            self._listeners[name] = [to for to in listening if to[0] != workflow.id]
        for name, keys in event_triggers(workflow, self.actions).items():
            self._listeners.setdefault(name, []).extend((workflow.id, key) for key in keys)
        self.served[workflow.id] = workflow
        return workflow, True

    def unserve(self, workflow_id: str) -> bool:
        """Stop answering ``workflow_id``'s webhooks and events (its definitions stay
        known, for its executions); false if it was not served."""
        if self.served.pop(workflow_id, None) is None:
            return False
        self._routes = {
            route: to for route, to in self._routes.items() if to.workflow.id != workflow_id
        }
        for name, listening in list(self._listeners.items()):
            self._listeners[name] = [to for to in listening if to[0] != workflow_id]
        return True

    def listeners(self, event: str) -> list[tuple[Workflow, str]]:
        """The served workflows, and their triggers, that start on ``event``."""
        return [(self.served[id], key) for id, key in self._listeners.get(event, ())]

    def webhook(self, method: str, path: str) -> WebhookRoute:
        """What answers a request: the served workflow, its trigger, how. Raises
        :class:`TriggerError` saying which requests are answered if none does."""
        method, path = method.upper(), webhook_path(path)
        found = self._routes.get((method, path))
        if found is not None:
            return found
        known = sorted(f"{m} /{p}" for m, p in self._routes)
        also = [m for m, p in self._routes if p == path]
        hint = f"; /{path} answers {', '.join(sorted(also))}" if also else ""
        raise TriggerError(
            f"no served workflow answers {method} /{path}{hint}; "
            + (
                f"webhooks answered: {', '.join(known)}"
                if known
                else "no workflow with a "
                "webhook.trigger is registered (engine.register or Engine(workflows=...))"
            ),
            methods=sorted(also),
        )

    def compile(
        self, workflow: Workflow | WorkflowSource, *, trigger: str | None = None
    ) -> ExecutionGraph:
        """Validate and compile a workflow against the actions.

        Compiled graphs are cached by workflow id, version and trigger. Raises
        :class:`WorkflowValidationError` listing every problem.
        """
        if not isinstance(workflow, Workflow):
            workflow = load_workflow(workflow, actions=self.actions, limits=self.limits)
        key = (workflow.id, workflow.version, trigger)
        cached = self._graphs.get(key)
        if cached is not None and (cached[0] is workflow or cached[0] == workflow):
            return cached[1]
        graph = compile_workflow(workflow, self.actions, trigger=trigger)
        self._keep(workflow, graph, trigger)
        return graph

    def _keep(self, workflow: Workflow, graph: ExecutionGraph, trigger: str | None) -> None:
        self._graphs[(workflow.id, workflow.version, trigger)] = (workflow, graph)
        self._graphs_by_hash[(graph.hash, graph.trigger)] = graph

    async def checked_apart(self, workflow: Workflow | WorkflowSource) -> Workflow:
        """As :meth:`checked`, with the loading and compiling on a worker thread: a
        definition of thousands of nodes takes a while to check, which the event loop
        then does not wait for. The graphs are kept as :meth:`compile` keeps them
        (for a workflow of one trigger, also as the one compiled without naming it)."""

        def load_and_compile() -> tuple[Workflow, list[ExecutionGraph]]:
            loaded = workflow
            if not isinstance(loaded, Workflow):
                loaded = load_workflow(loaded, actions=self.actions, limits=self.limits)
            triggers = triggers_of(loaded, self.actions)
            graphs = [compile_workflow(loaded, self.actions, trigger=key) for key in triggers]
            return loaded, graphs

        loaded, graphs = await anyio.to_thread.run_sync(load_and_compile)
        for graph in graphs:
            self._keep(loaded, graph, graph.trigger)
        if len(graphs) == 1:
            self._keep(loaded, graphs[0], None)
        return loaded

    async def save(self, graph: ExecutionGraph, store: Store, now: float) -> None:
        """Store the definition of ``graph`` (once per hash)."""
        if graph.hash in self._saved_hashes:
            return
        await store.save_workflow(
            StoredWorkflow(
                hash=graph.hash,
                id=graph.workflow.id,
                version=graph.workflow.version,
                definition=await _plain(graph.workflow),
                created_at=now,
            )
        )
        self._saved_hashes.add(graph.hash)

    async def keep(self, workflow: Workflow, store: Store, now: float) -> None:
        """Keep ``workflow`` in the store as the definition every engine on it serves
        for its id (it must be served here already)."""
        kept = StoredWorkflow(
            hash=self._hash_of(workflow),
            id=workflow.id,
            version=workflow.version,
            definition=await _plain(workflow),
            created_at=now,
        )
        await store.keep_workflow(kept)
        self._kept[workflow.id] = kept.hash

    def _hash_of(self, workflow: Workflow) -> str:
        """The definition hash of ``workflow``: its graphs', if it was compiled here."""
        for known, graph in self._graphs.values():
            if known is workflow:
                return graph.hash
        return definition_hash(workflow)

    async def forget_kept(self, workflow_id: str, store: Store) -> bool:
        """Keep ``workflow_id`` in the store no more; false if it was not kept."""
        self._kept.pop(workflow_id, None)
        return await store.forget_kept_workflow(workflow_id)

    async def sync_kept(self, store: Store) -> tuple[list[Workflow], list[str]]:
        """Serve what the store keeps now (:meth:`keep`, by this engine or another):
        the definitions newly kept, and no longer the ids no longer kept. Returns the
        workflows now served and the ids served no more. A definition that does not
        load with this engine's actions is left out, and logged (once)."""
        kept = {stored.id: stored for stored in await store.kept_workflows()}
        served: list[Workflow] = []
        for workflow_id, stored in kept.items():
            if self._kept.get(workflow_id) == stored.hash:
                continue
            self._kept[workflow_id] = stored.hash
            try:
                workflow, now_served = self.serve(stored.definition)
            except PranaError as exc:
                logger.error(
                    "workflow %s v%s kept in the store is not served: %s",
                    stored.id,
                    stored.version,
                    exc,
                )
            else:
                if now_served:  # not if a higher version is served here already
                    served.append(workflow)
        gone = [workflow_id for workflow_id in self._kept if workflow_id not in kept]
        for workflow_id in gone:
            del self._kept[workflow_id]
            self.unserve(workflow_id)
        return served, gone

    def compiled(self, workflow_hash: str, trigger: str) -> ExecutionGraph | None:
        """The graph of the definition with ``workflow_hash`` for ``trigger``, if it
        was compiled already (:meth:`graph_for`); never compiles."""
        return self._graphs_by_hash.get((workflow_hash, trigger))

    async def graph_for(self, stored: StoredExecution, store: Store) -> ExecutionGraph:
        """The graph of the definition ``stored`` started on. Raises
        :class:`PranaError` if it is missing or no longer compiles to it."""
        key = (stored.workflow_hash, stored.trigger)
        graph = self._graphs_by_hash.get(key)
        if graph is not None:
            return graph
        definition = await self._definition(stored.workflow_hash, store)
        graph = self._graphs_by_hash.get(key)
        if graph is not None:  # compiled meanwhile, by a task that waited alongside
            return graph
        if definition is None:
            raise PranaError(
                f"the workflow of execution {stored.id} ({stored.workflow_id} v{stored.workflow_version}) "
                "is missing from the store"
            )
        workflow = load_workflow(definition.definition, actions=self.actions, limits=self.limits)
        graph = compile_workflow(workflow, self.actions, trigger=stored.trigger)
        if graph.hash != stored.workflow_hash:
            raise PranaError(
                f"the stored definition of {stored.workflow_id} v{stored.workflow_version} does not "
                f"compile to the version execution {stored.id} started on"
            )
        self._graphs_by_hash[key] = graph
        self._saved_hashes.add(graph.hash)
        return graph

    async def _definition(self, workflow_hash: str, store: Store) -> StoredWorkflow | None:
        """A stored definition, loaded once however many tasks ask at the same time."""
        loading = self._loading.get(workflow_hash)
        if loading is not None:
            await loading.wait()
            return self._definitions.get(workflow_hash)
        loading = self._loading[workflow_hash] = anyio.Event()
        try:
            definition = await store.load_workflow(workflow_hash)
            if definition is not None:
                self._definitions[workflow_hash] = definition
            return definition
        finally:
            del self._loading[workflow_hash]
            loading.set()


# A definition of this many nodes is made into plain data on a worker thread: for
# 10 000 nodes that takes 17-27 ms, which the event loop then does not wait for.
_APART = 1000


async def _plain(workflow: Workflow) -> dict[str, Any]:
    """The definition of ``workflow`` as plain data, to store."""
    if len(workflow.nodes) < _APART:
        return workflow_to_dict(workflow)
    return await anyio.to_thread.run_sync(workflow_to_dict, workflow)
