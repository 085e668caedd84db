"""A background loop that plays Secrets Manager's part in rotations moto started (moto cannot invoke a
rotation Lambda without Docker): every ``interval`` seconds it finds them and drives their four steps
through the rotation function the secret names, with ``zus_local.secrets_manager_rotation``.

One line per step (secret name, step, outcome, duration); a failed step is retried and logged by
``secrets_manager_rotation``. Only secret names, step names and error types are ever printed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from zus_local.console import Console
from zus_local.lambda_runtime import Invocation
from zus_local.secrets_manager_rotation import play_started_rotations

Invoke = Callable[[str, Any], Invocation]


def secret_name(secret_id: str) -> str:
    """``arn:…:secret:zus-m2m/local/x-AbCdEf`` → ``zus-m2m/local/x`` (names pass through)."""
    if not secret_id.startswith("arn:"):
        return secret_id
    name = secret_id.split(":", 6)[-1]
    return name[:-7] if len(name) > 7 and name[-7] == "-" else name


class RotationPlayer:
    def __init__(
        self,
        secretsmanager: Any,
        invoke: Invoke,
        function_for_arn: Callable[[str], str | None],
        default_function: str | None,
        console: Console,
        *,
        interval: float = 0.5,
    ) -> None:
        """``function_for_arn`` maps a secret's RotationLambdaARN to a function of the template;
        ``default_function`` serves a secret that names none this stack runs."""
        self._sm = secretsmanager
        self._invoke = invoke
        self._function_for_arn = function_for_arn
        self._default = default_function
        self._console = console
        self._interval = interval
        self._driven: set[tuple[str, str]] = set()
        self._functions: dict[str, str | None] = {}
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_problem = ""

    def start(self) -> RotationPlayer:
        self._thread = threading.Thread(target=self._loop, name="secrets-manager-rotations", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def play_once(self) -> list[tuple[str, str]]:
        """One pass: drive every rotation started since the last pass. Returns them."""
        return play_started_rotations(self._sm, self._invoke_step, self._driven)

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.play_once()
                self._last_problem = ""
            except Exception as exc:  # moto restarting or stopping: say so once, keep polling
                problem = type(exc).__name__
                if problem != self._last_problem:
                    self._console.line(f"rotations: cannot list secrets ({problem}); retrying")
                    self._last_problem = problem

    def _function_for(self, secret_id: str) -> str:
        if secret_id not in self._functions:
            arn = ""
            with contextlib.suppress(ClientError):
                arn = str(self._sm.describe_secret(SecretId=secret_id).get("RotationLambdaARN") or "")
            self._functions[secret_id] = (self._function_for_arn(arn) if arn else None) or self._default
        function = self._functions[secret_id]
        if function is None:
            raise LookupError(f"no rotation function of this stack serves {secret_name(secret_id)}")
        return function

    def _invoke_step(self, event: dict[str, str]) -> None:
        name, step = secret_name(event["SecretId"]), event["Step"]
        key = (event["SecretId"], event["ClientRequestToken"], step)
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        started = time.perf_counter()
        try:
            function = self._function_for(event["SecretId"])
            self._invoke(function, event)
        except Exception as exc:
            elapsed = (time.perf_counter() - started) * 1000
            self._console.line(
                f"rotation {name}  {step}  failed ({type(exc).__name__}, attempt {attempt})  {elapsed:.0f} ms"
            )
            raise
        elapsed = (time.perf_counter() - started) * 1000
        self._console.line(f"rotation {name}  {step}  ok  {elapsed:.0f} ms")
