"""asyncray's mypy plugin: the types mypy cannot work out alone.

Enable it in the project's mypy configuration::

    [tool.mypy]
    plugins = ["asyncray.mypy_plugin"]

What it adds (the README's "Types" section says what is checked with and
without it):

- ``f.remote(...)``, ``handle.method.remote(...)`` and ``Cls.remote(...)``
  are checked against the parameters of ``f``, of the method (without
  ``self``) and of ``Cls.__init__``, each widened to ``T | ObjectRef[T]``:
  as in Ray, a ref may stand for a value (the task gets the value). Without
  the plugin a checker can check the parameters exactly (rejecting a ref in
  place of a value) or not at all; asyncray's annotations choose not at all.
- ``handle.method`` on an ``ActorHandle[C]`` is ``ActorMethod[<parameters
  of C.method>, <its result>]``, an ``async def`` method's result awaited;
  a name that is not a method of ``C`` is an error.
- A class decorated with ``@remote`` keeps its name as a class for mypy
  (mypy ignores what a class decorator returns), so the plugin gives it the
  ``remote()`` and ``options()`` of an ``ActorClass[C]``.

This module is imported by mypy only, never by asyncray.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from mypy.argmap import map_actuals_to_formals
from mypy.checker import TypeChecker
from mypy.errorcodes import ATTR_DEFINED
from mypy.expandtype import expand_type_by_instance
from mypy.nodes import (
    ARG_NAMED,
    ARG_POS,
    ARG_STAR,
    ARG_STAR2,
    ArgKind,
    Argument,
    CallExpr,
    Decorator,
    IntExpr,
    RefExpr,
    TypeInfo,
    Var,
)
from mypy.plugin import (
    AttributeContext,
    CheckerPluginInterface,
    ClassDefContext,
    MethodSigContext,
    Plugin,
)
from mypy.plugins.common import add_method_to_class
from mypy.subtypes import find_member
from mypy.typeops import bind_self
from mypy.types import (
    AnyType,
    CallableType,
    FunctionLike,
    Instance,
    Parameters,
    Type,
    TypeOfAny,
    UnionType,
    get_proper_type,
    has_type_vars,
)
from mypy.typevars import fill_typevars

_OBJECT_REF = "asyncray.object_ref.ObjectRef"
_REMOTE_FUNCTION = "asyncray.remote_function.RemoteFunction"
_ACTOR_METHOD = "asyncray.actor.ActorMethod"
# What ``.remote()`` gives with ``num_returns`` > 1 (a list of refs) and 0 (None).
_LIST_OF_REFS = "asyncray.remote_function.ListOfRefs"
_NO_REFS = "asyncray.remote_function.NoRefs"
_METHOD_DECORATORS = frozenset({"asyncray._remote.method", "asyncray.method"})
_ACTOR_CLASS = "asyncray.actor.ActorClass"
_ACTOR_CLASS_WITH_OPTIONS = "asyncray.actor._ActorClassWithOptions"
_ACTOR_HANDLE = "asyncray.actor.ActorHandle"
_HANDLE_ATTRIBUTE = _ACTOR_HANDLE + "."
_REMOTE_DECORATORS = frozenset({"asyncray._remote.remote", "asyncray.remote"})
# Methods every actor has (``handle.__ray_ready__.remote()``): typed as the
# annotations say (any arguments, ``ObjectRef[Any]``).
_BUILTIN_METHODS = frozenset({"__ray_ready__", "__ray_call__", "__ray_terminate__"})
# Marks, in a class's metadata (kept in mypy's cache), a class made an actor by @remote.
_METADATA_KEY = "asyncray"


class AsyncrayPlugin(Plugin):
    def get_method_signature_hook(
        self, fullname: str
    ) -> Callable[[MethodSigContext], FunctionLike] | None:
        if fullname.endswith(".remote"):
            # RemoteFunction, ActorMethod, ActorClass, and every class made an
            # actor by @remote (known only from the receiver: see the hook).
            return _remote_signature
        return None

    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        if fullname.startswith(_HANDLE_ATTRIBUTE):
            return partial(_actor_method, fullname[len(_HANDLE_ATTRIBUTE) :])
        return None

    def get_class_decorator_hook_2(self, fullname: str) -> Callable[[ClassDefContext], bool] | None:
        if fullname in _REMOTE_DECORATORS:
            return _actor_class_decorated
        return None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return AsyncrayPlugin


# ==================================================================== .remote(...)


def _remote_signature(ctx: MethodSigContext) -> FunctionLike:
    """The signature of a ``.remote()``: the target's parameters, each also taking a ref."""
    receiver = get_proper_type(ctx.type)
    signature = ctx.default_signature
    if isinstance(receiver, Instance):
        name = receiver.type.fullname
        if name in (_REMOTE_FUNCTION, _ACTOR_METHOD, _LIST_OF_REFS, _NO_REFS) and receiver.args:
            params = get_proper_type(receiver.args[0])
            if isinstance(params, Parameters):
                return _with_parameters(ctx, signature, params)
            return signature
        if name in (_ACTOR_CLASS, _ACTOR_CLASS_WITH_OPTIONS) and receiver.args:
            cls = get_proper_type(receiver.args[0])
            if isinstance(cls, Instance):
                return _with_init_parameters(ctx, signature, cls)
        return signature
    if isinstance(receiver, FunctionLike) and receiver.is_type_obj():
        info = receiver.type_object()
        if _METADATA_KEY in info.metadata:
            instance = fill_typevars(info)
            if isinstance(instance, Instance):
                return _with_init_parameters(ctx, signature, instance)
    return signature


def _with_init_parameters(
    ctx: MethodSigContext, signature: CallableType, cls: Instance
) -> CallableType:
    method = cls.type.get_method("__init__")  # along the MRO (find_member skips __init__)
    init = get_proper_type(method.type) if method is not None else None
    if not isinstance(init, CallableType):
        return signature  # overloaded or unannotated: as annotated (any arguments)
    init = bind_self(init, cls)
    if not isinstance(init, CallableType):
        return signature
    return _with_parameters(ctx, signature, expand_type_by_instance(init, cls))


def _with_parameters(
    ctx: MethodSigContext, signature: CallableType, params: Parameters | CallableType
) -> CallableType:
    ref = _type_info(ctx.api, _OBJECT_REF)
    if ref is None:
        return signature
    generic = [has_type_vars(t) for t in params.arg_types]
    given_refs = _formals_given_refs(ctx, ref, params) if any(generic) else set()
    arg_types = []
    for i, t in enumerate(params.arg_types):
        if not generic[i]:
            arg_types.append(_or_ref(ref, t))
        elif i in given_refs:
            # mypy solves no type variable from ``T | ObjectRef[T]`` given a
            # ref (either side could match): take the side the call uses.
            arg_types.append(Instance(ref, [t]))
        else:
            arg_types.append(t)
    return signature.copy_modified(
        arg_types=arg_types,
        arg_kinds=list(params.arg_kinds),
        arg_names=list(params.arg_names),
        variables=[*signature.variables, *params.variables],
    )


def _formals_given_refs(
    ctx: MethodSigContext, ref: TypeInfo, params: Parameters | CallableType
) -> set[int]:
    """The parameters to which this call passes only ``ObjectRef`` s."""
    call = ctx.context
    if not isinstance(call, CallExpr) or not isinstance(ctx.api, TypeChecker):
        return set()
    with ctx.api.msg.filter_errors():  # reported once, by the call's own check
        types = [get_proper_type(ctx.api.get_expression_type(arg)) for arg in call.args]
    formal_to_actual = map_actuals_to_formals(
        call.arg_kinds, call.arg_names, params.arg_kinds, params.arg_names, lambda i: types[i]
    )
    is_ref = [
        kind in (ARG_POS, ARG_NAMED) and isinstance(t, Instance) and t.type is ref
        for kind, t in zip(call.arg_kinds, types)
    ]
    return {
        formal
        for formal, actuals in enumerate(formal_to_actual)
        if actuals and all(is_ref[a] for a in actuals)
    }


def _or_ref(ref: TypeInfo, t: Type) -> Type:
    """``T | ObjectRef[T]`` (``Any`` stays ``Any``)."""
    if isinstance(get_proper_type(t), AnyType):
        return t
    return UnionType.make_union([t, Instance(ref, [t])])


# ==================================================================== handle.method


def _actor_method(name: str, ctx: AttributeContext) -> Type:
    """``ActorHandle[C].name``: ``ActorMethod[<params of C.name>, <its result, awaited>]``."""
    handle = get_proper_type(ctx.type)
    if not isinstance(handle, Instance) or not handle.args or name in _BUILTIN_METHODS:
        return ctx.default_attr_type
    cls = get_proper_type(handle.args[0])
    if not isinstance(cls, Instance):
        return ctx.default_attr_type  # ActorHandle[Any], e.g. from get_actor()
    member = find_member(name, cls, cls)
    method = get_proper_type(member) if member is not None else None
    if method is None or not isinstance(method, FunctionLike):
        ctx.api.fail(
            f'Actor class "{cls.type.name}" has no method "{name}"', ctx.context, code=ATTR_DEFINED
        )
        return AnyType(TypeOfAny.from_error)
    if not isinstance(method, CallableType):
        return ctx.default_attr_type  # overloaded: as annotated
    result = get_proper_type(method.ret_type)
    if (
        isinstance(result, Instance)
        and result.type.fullname == "typing.Coroutine"
        and len(result.args) == 3
    ):
        result = get_proper_type(result.args[2])  # an async def method: the awaited result
    params = Parameters(
        method.arg_types, method.arg_kinds, method.arg_names, variables=method.variables
    )
    num_returns = _declared_num_returns(cls.type, name)
    args: list[Type]
    if num_returns == 0:
        wrapper, args = _type_info(ctx.api, _NO_REFS), [params]
    elif num_returns is not None and num_returns > 1:
        wrapper, args = _type_info(ctx.api, _LIST_OF_REFS), [params]
    else:
        wrapper, args = _type_info(ctx.api, _ACTOR_METHOD), [params, result]
    if wrapper is None:
        return ctx.default_attr_type
    return Instance(wrapper, args)


def _declared_num_returns(info: TypeInfo, name: str) -> int | None:
    """The ``num_returns`` of ``@method(num_returns=<int>)`` on method ``name``, if given."""
    node = info.get(name)
    decorated = node.node if node is not None else None
    if not isinstance(decorated, Decorator):
        return None
    for decorator in decorated.original_decorators:
        if (
            isinstance(decorator, CallExpr)
            and isinstance(decorator.callee, RefExpr)
            and decorator.callee.fullname in _METHOD_DECORATORS
        ):
            for arg_name, value in zip(decorator.arg_names, decorator.args):
                if arg_name == "num_returns" and isinstance(value, IntExpr):
                    return value.value
    return None


def _type_info(api: CheckerPluginInterface, fullname: str) -> TypeInfo | None:
    """An asyncray class, by full name (its module is loaded: the receiver's type uses it)."""
    module, _, name = fullname.rpartition(".")
    modules = api.modules if isinstance(api, TypeChecker) else {}
    tree = modules.get(module)
    node = tree.names.get(name) if tree is not None else None
    return node.node if node is not None and isinstance(node.node, TypeInfo) else None


# ==================================================================== @remote class


def _actor_class_decorated(ctx: ClassDefContext) -> bool:
    """Give a class decorated with ``@remote`` the ``remote()`` and ``options()`` of an actor."""
    handle = ctx.api.lookup_fully_qualified_or_none(_ACTOR_HANDLE)
    with_options = ctx.api.lookup_fully_qualified_or_none(_ACTOR_CLASS_WITH_OPTIONS)
    if handle is None or with_options is None:
        return ctx.api.final_iteration  # asyncray.actor not analysed yet: come back
    handle_info, options_info = handle.node, with_options.node
    if not isinstance(handle_info, TypeInfo) or not isinstance(options_info, TypeInfo):
        return True
    info = ctx.cls.info
    info.metadata[_METADATA_KEY] = {"actor": True}
    instance = fill_typevars(info)
    anything = AnyType(TypeOfAny.explicit)
    if "remote" not in info.names:
        add_method_to_class(
            ctx.api,
            ctx.cls,
            "remote",
            [_argument("args", anything, ARG_STAR), _argument("kwargs", anything, ARG_STAR2)],
            Instance(handle_info, [instance]),
            is_staticmethod=True,
        )
    if "options" not in info.names:
        add_method_to_class(
            ctx.api,
            ctx.cls,
            "options",
            [_argument("options", anything, ARG_STAR2)],
            Instance(options_info, [instance]),
            is_staticmethod=True,
        )
    return True


def _argument(name: str, t: Type, kind: ArgKind) -> Argument:
    return Argument(Var(name, t), t, None, kind)
