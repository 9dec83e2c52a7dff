"""``edgemeter demo``'s pieces: demo models generated on the spot and a private MQTT broker.

Importing this package imports neither onnx, onnxruntime, flatbuffers nor amqtt; the functions
that need them import them and raise :class:`~shared.errors.MissingExtraError` (the ``demo``
extra) when they are missing.
"""

from edgemeter.demo.broker import PrivateBroker, find_mosquitto, free_port
from edgemeter.demo.models import (
    generate_demo_models,
    generate_onnx_float,
    generate_onnx_int8,
    generate_tflite_float,
    generate_tflite_int8,
)

__all__ = [
    "PrivateBroker",
    "find_mosquitto",
    "free_port",
    "generate_demo_models",
    "generate_onnx_float",
    "generate_onnx_int8",
    "generate_tflite_float",
    "generate_tflite_int8",
]
