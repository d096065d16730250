"""Type-directed hook dispatch for the control-plane converter.

A :class:`Converter` finds the structure hook (JSON value -> Python) or unstructure hook
(Python -> JSON value) for a type: a hook registered for exactly that type wins, then the
predicates, newest first; a predicate's factory builds the hook for that type once and it is
cached. There are no built-in hooks, so a type nobody registered is a ``TypeError`` when the
codec is built, never a silent coercion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Converter", "HookTable"]

_H = TypeVar("_H", bound="Callable[..., Any]")


class HookTable(Generic[_H]):
    """Hooks of one direction, by type."""

    def __init__(self, direction: str) -> None:
        self._direction = direction
        self._exact: dict[Any, _H] = {}
        self._rules: list[tuple[Callable[[Any], bool], Callable[[Any], _H]]] = []
        self._built: dict[Any, _H] = {}

    def register(self, tp: Any, hook: _H) -> None:
        """``hook`` for exactly ``tp``."""
        self._exact[tp] = hook
        self._built.clear()

    def register_func(self, predicate: Callable[[Any], bool], hook: _H) -> None:
        """``hook`` for every type ``predicate`` accepts."""
        self.register_factory(predicate, lambda _tp: hook)

    def register_factory(
        self, predicate: Callable[[Any], bool], factory: Callable[[Any], _H]
    ) -> None:
        """``factory(tp)`` builds the hook for every type ``predicate`` accepts."""
        self._rules.append((predicate, factory))
        self._built.clear()

    def get(self, tp: Any) -> _H:
        """The hook for ``tp``, built on first use.

        Raises:
            TypeError: no hook is registered for ``tp``.
        """
        hook = self._built.get(tp)
        if hook is None:
            hook = self._exact.get(tp)
            if hook is None:
                hook = self._from_rules(tp)
            self._built[tp] = hook
        return hook

    def _from_rules(self, tp: Any) -> _H:
        for predicate, factory in reversed(self._rules):
            if predicate(tp):
                hook: _H = factory(tp)
                return hook
        raise TypeError(f"simtrio codec has no {self._direction} hook for {tp!r}")


class Converter:
    """Both directions: ``structure`` hooks take ``(value, type)``, ``unstructure`` hooks
    take ``value``."""

    def __init__(self) -> None:
        self.structure_hooks: HookTable[Callable[[Any, Any], Any]] = HookTable("structure")
        self.unstructure_hooks: HookTable[Callable[[Any], Any]] = HookTable("unstructure")

    def register_structure_hook(self, tp: Any, hook: Callable[[Any, Any], Any]) -> None:
        self.structure_hooks.register(tp, hook)

    def register_structure_hook_func(
        self, predicate: Callable[[Any], bool], hook: Callable[[Any, Any], Any]
    ) -> None:
        self.structure_hooks.register_func(predicate, hook)

    def register_structure_hook_factory(
        self, predicate: Callable[[Any], bool], factory: Callable[[Any], Callable[[Any, Any], Any]]
    ) -> None:
        self.structure_hooks.register_factory(predicate, factory)

    def get_structure_hook(self, tp: Any) -> Callable[[Any, Any], Any]:
        return self.structure_hooks.get(tp)

    def register_unstructure_hook(self, tp: Any, hook: Callable[[Any], Any]) -> None:
        self.unstructure_hooks.register(tp, hook)

    def register_unstructure_hook_func(
        self, predicate: Callable[[Any], bool], hook: Callable[[Any], Any]
    ) -> None:
        self.unstructure_hooks.register_func(predicate, hook)

    def register_unstructure_hook_factory(
        self, predicate: Callable[[Any], bool], factory: Callable[[Any], Callable[[Any], Any]]
    ) -> None:
        self.unstructure_hooks.register_factory(predicate, factory)

    def get_unstructure_hook(self, tp: Any) -> Callable[[Any], Any]:
        return self.unstructure_hooks.get(tp)

    def unstructure(self, value: Any) -> Any:
        """``value`` as JSON, by the hook of its class."""
        return self.unstructure_hooks.get(value.__class__)(value)
