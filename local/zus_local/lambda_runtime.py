"""Runs the template's Python handlers in this process, the way Lambda runs them in containers.

Each *container* is one import of the function's handler module (``functions/<CodeUri>/app.py``,
loaded by path) with the function's environment applied while it imports, since handlers read their
settings and build their clients at module scope. A container serves one invocation at a time, as on
Lambda; a function gets a new container (a cold start) when all of its containers are busy, up to
``concurrency``. Every invocation gets a fresh ``LocalLambdaContext`` carrying the function's name,
memory, log group and the template's timeout, so ``get_remaining_time_in_millis`` counts down.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from zus_local.lambda_context import LocalLambdaContext
from zus_local.template_model import FunctionSpec, TemplateModel

# os.environ is process-wide: one container imports at a time.
_IMPORT_LOCK = threading.Lock()


class FunctionLoadError(RuntimeError):
    """A handler module failed to import (its init code raised, e.g. on a missing setting)."""


@contextmanager
def applied_environment(variables: Mapping[str, str | None]) -> Iterator[None]:
    """``variables`` in ``os.environ`` for the duration (None: unset), then the previous values back."""
    saved = {name: os.environ.get(name) for name in variables}
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class _Container:
    number: int
    module: ModuleType
    handler: Callable[[Any, Any], Any]
    log_stream: str


class _Function:
    def __init__(self, spec: FunctionSpec, environment: Mapping[str, str], concurrency: int) -> None:
        self.spec = spec
        self.environment = dict(environment)
        self.concurrency = concurrency
        self._idle: list[_Container] = []
        self._count = 0
        self._numbers = itertools.count(1)
        self._available = threading.Condition()

    def load(self) -> _Container:
        number = next(self._numbers)
        module_name = f"zus_local_function_{self.spec.logical_id}_{number}"
        location = self.spec.module_path
        with _IMPORT_LOCK, applied_environment(self.environment):
            code_dir = str(self.spec.code_dir)
            sys.path.insert(0, code_dir)  # sibling modules of the handler, as in the Lambda package
            try:
                spec = importlib.util.spec_from_file_location(module_name, location)
                if spec is None or spec.loader is None:
                    raise FunctionLoadError(f"{self.spec.logical_id}: cannot load {location}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                try:
                    spec.loader.exec_module(module)
                except Exception as exc:
                    sys.modules.pop(module_name, None)
                    raise FunctionLoadError(
                        f"{self.spec.logical_id}: importing {location.name} failed: {type(exc).__name__}: {exc}"
                    ) from exc
            finally:
                sys.path.remove(code_dir)
        handler = getattr(module, self.spec.handler_name, None)
        if not callable(handler):
            raise FunctionLoadError(f"{self.spec.logical_id}: {location.name} has no {self.spec.handler_name}()")
        stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        return _Container(number=number, module=module, handler=handler, log_stream=stream)

    def warm(self) -> None:
        container = self.load()
        with self._available:
            self._count += 1
            self._idle.append(container)

    @contextmanager
    def container(self) -> Iterator[tuple[_Container, bool]]:
        """An idle container, or a new one (cold) if there is room, else wait for one to free up."""
        cold = False
        with self._available:
            while not self._idle and self._count >= self.concurrency:
                self._available.wait()
            if self._idle:
                container: _Container | None = self._idle.pop()
            else:
                self._count += 1
                container = None
        if container is None:
            try:
                container = self.load()
            except BaseException:
                with self._available:
                    self._count -= 1
                    self._available.notify()
                raise
            cold = True
        try:
            yield container, cold
        finally:
            with self._available:
                self._idle.append(container)
                self._available.notify()


@dataclass(frozen=True)
class Invocation:
    """What one call returned, with how long it took and whether it needed a cold start."""

    result: Any
    duration_ms: float
    cold_start: bool
    request_id: str
    timed_out: bool


class LambdaRuntime:
    """The template's functions, importable and invocable by logical id or ARN."""

    def __init__(
        self,
        model: TemplateModel,
        overrides: Mapping[str, str] | None = None,
        *,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        concurrency: int = 4,
    ) -> None:
        """``overrides`` replace template variables in every function's environment (e.g. the Zus URLs)."""
        self.model = model
        self.region = region
        self.account_id = account_id
        self._functions = {
            logical_id: _Function(spec, {**spec.environment, **(overrides or {})}, max(1, concurrency))
            for logical_id, spec in model.functions.items()
        }

    def environment(self, logical_id: str) -> Mapping[str, str]:
        """The environment a function's containers import with."""
        return dict(self._functions[logical_id].environment)

    def warm_up(self) -> None:
        """One container per function, imported now: a broken handler stops the stack at start."""
        for function in self._functions.values():
            function.warm()

    def invoke(self, logical_id: str, event: Any, *, request_id: str | None = None) -> Invocation:
        """Call the function's handler with ``event``; its exception propagates, as a failed invocation."""
        function = self._functions[logical_id]
        spec = function.spec
        with function.container() as (container, cold):
            context = LocalLambdaContext(
                function_name=spec.name,
                timeout_seconds=spec.timeout_seconds,
                memory_limit_in_mb=spec.memory_mb,
                aws_request_id=request_id or str(uuid.uuid4()),
                log_group_name=spec.log_group,
                log_stream_name=container.log_stream,
                region=self.region,
                account_id=self.account_id,
            )
            started = time.perf_counter()
            result = container.handler(event, context)
            duration = time.perf_counter() - started
        return Invocation(
            result=result,
            duration_ms=duration * 1000,
            cold_start=cold,
            request_id=context.aws_request_id,
            timed_out=duration > spec.timeout_seconds,
        )

    def function_by_arn(self, arn: str) -> FunctionSpec | None:
        return self.model.function_by_arn(arn)
