"""The node's ROS parameters from the table in :mod:`semnerf_ros.bridge.params`: declared
with descriptors (type, range, choices, read-only), an integer accepted for a double
(``-p publish_rate:=2``, ``ros2 param set ... publish_rate 2``), values checked at start-up
and at run time, unknown names warned about with the closest known one.

Only public rclpy API: the node is created with ``automatically_declare_parameters_from_overrides``
so that every name the user set is visible; they are undeclared again, unknown ones warned
about, and each of ours declared with its descriptor (rclpy then applies the user's value)."""
from __future__ import annotations

import difflib

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from ..bridge.params import PARAMS, SPECS, ParameterValueError, ParamSpec, check_value

PARAM_TYPES = {"bool": Parameter.Type.BOOL, "int": Parameter.Type.INTEGER, "double": Parameter.Type.DOUBLE,
               "string": Parameter.Type.STRING, "string_array": Parameter.Type.STRING_ARRAY}
#: rclpy's own parameters, not in our table
ROS_OWN_PARAMETERS = {"use_sim_time", "start_type_description_service"}
#: constructor options a node needs for :func:`declare_parameters`
NODE_OPTIONS = {"automatically_declare_parameters_from_overrides": True}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only)
    d.type = PARAM_TYPES[spec.kind].value
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.kind == "double" and spec.low is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                     step=0.0)]
    if spec.kind == "int" and spec.low is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    return d


def _given_values(node: Node) -> dict:
    """The parameters the user set (auto-declared from the overrides), undeclared again."""
    given = {}
    for name in node.list_parameters([], 0).names:
        if name in ROS_OWN_PARAMETERS:
            continue
        given[name] = node.get_parameter(name).value
        node.undeclare_parameter(name)
    return given


def declare_parameters(node: Node) -> dict:
    """Declare every parameter of the table on ``node`` (created with :data:`NODE_OPTIONS`);
    returns {name: value}.  Warns about unknown names; raises :class:`ParameterValueError`
    naming a parameter whose value cannot be used."""
    given = _given_values(node)
    for name in given:
        if name not in SPECS and not name.startswith("qos_overrides."):
            close = difflib.get_close_matches(name, list(SPECS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            node.get_logger().warning(f"ignoring unknown parameter '{name}'{hint}")
    values = {}
    for spec in PARAMS:
        value = given.get(spec.name)
        try:
            if spec.kind == "double" and isinstance(value, int) and not isinstance(value, bool):
                # accept `-p publish_rate:=2` (an integer) for a double
                value = node.declare_parameter(spec.name, float(value), descriptor(spec), ignore_override=True).value
            elif spec.kind == "string_array" and not spec.default:
                node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, descriptor(spec))
                value = list(value or [])
            else:   # the default types the parameter; rclpy applies (and type-checks) the user's value
                value = node.declare_parameter(spec.name, spec.default, descriptor(spec)).value
        except (ParameterException, TypeError, ValueError) as exc:
            raise ParameterValueError(f"parameter '{spec.name}': {exc}") from exc
        if spec.kind == "string_array":
            value = list(value or [])
        err = check_value(spec, value)
        if err:
            raise ParameterValueError(err)
        values[spec.name] = value
    return values


def coerce_types(params: list) -> list:
    """Pre-set callback: an INTEGER given for a double parameter becomes a DOUBLE (`ros2 param
    set ... publish_rate 2` sends an INTEGER)."""
    out = []
    for p in params:
        spec = SPECS.get(p.name)
        if spec is not None and spec.kind == "double" and p.type_ == Parameter.Type.INTEGER:
            p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
        out.append(p)
    return out


def validate_change(params: list) -> SetParametersResult:
    """On-set callback: a run-time value outside the table's type, range or choices is refused."""
    for p in params:
        spec = SPECS.get(p.name)
        if spec is None:
            continue
        value = p.value
        if spec.kind == "double" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        err = check_value(spec, value)
        if err:
            return SetParametersResult(successful=False, reason=err)
    return SetParametersResult(successful=True)


def input_qos(kind: str, depth: int) -> QoSProfile:
    """The inputs' QoS for parameter ``qos``: ``sensor_data`` (best effort, as camera drivers
    publish) or ``reliable``; ``depth`` from ``qos_depth``."""
    if kind == "sensor_data":
        q = QoSProfile(depth=depth)
        q.history, q.reliability = qos_profile_sensor_data.history, qos_profile_sensor_data.reliability
        q.durability = qos_profile_sensor_data.durability
        return q
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
