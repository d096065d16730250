"""Cheap positional constructors for the frozen attrs classes built once per received message.

The ``__init__`` attrs generates for a frozen class stores every field through
``object.__setattr__`` (a name lookup on the class per field). Writing each slot through its
descriptor builds the identical object for about half the cost, which matters for the few
classes created hundreds of thousands of times a second (slot notifications, data-plane
notifications). Only classes with nothing else to run qualify: no validator, no converter, no
``__attrs_post_init__``, every field in ``__init__``; :func:`plain_constructor` checks that.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

_T = TypeVar("_T")


def plain_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A constructor taking every field positionally, equal in effect to ``cls(*fields)``.

    Raises:
        TypeError: ``cls`` is not a slotted attrs class whose ``__init__`` only stores its
            fields, or has a number of fields not provided for (1, 2, 3 or 6).
    """
    if not attrs.has(cast("type", cls)) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted attrs class")
    fields = attrs.fields(cast("Any", cls))
    if hasattr(cls, "__attrs_post_init__") or any(
        f.validator is not None or f.converter is not None or not f.init for f in fields
    ):
        raise TypeError(f"{cls.__name__} needs its generated __init__")
    new = object.__new__
    setters: list[Callable[[object, object], None]] = [cls.__dict__[f.name].__set__ for f in fields]
    count = len(setters)
    if count == 1:
        (s0,) = setters

        def make1(a: Any) -> _T:
            obj = new(cls)
            s0(obj, a)
            return obj

        return make1
    if count == 2:
        s0, s1 = setters

        def make2(a: Any, b: Any) -> _T:
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            return obj

        return make2
    if count == 3:
        s0, s1, s2 = setters

        def make3(a: Any, b: Any, c: Any) -> _T:
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            s2(obj, c)
            return obj

        return make3
    if count == 6:
        s0, s1, s2, s3, s4, s5 = setters

        def make6(a: Any, b: Any, c: Any, d: Any, e: Any, f: Any) -> _T:
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            s2(obj, c)
            s3(obj, d)
            s4(obj, e)
            s5(obj, f)
            return obj

        return make6
    raise TypeError(f"{cls.__name__}: no plain constructor for {count} fields")
