"""The ROS-free half of the node: everything between messages and the engine that does not
need rclpy, so it is unit-tested without DDS (test/test_bridge.py).

* :mod:`.params` -- the node's parameter table (types, ranges, defaults, descriptions, files)
* :mod:`.mapper_api` -- ``MapperAPI``, the typed interface the node needs of the engine
* :mod:`.sync` -- approximate-time synchronizer (message_filters' semantics, pure Python)
* :mod:`.convert` -- Image / CameraInfo / pose messages <-> numpy (no cv_bridge; duck-typed)
* :mod:`.frames` -- a synchronized set of messages -> a validated Frame, or ``Rejected``
* :mod:`.intake` -- ``StampGate`` (order and age of stamps), ``FrameIntake`` (queue to the mapper)
* :mod:`.ledger` -- ``InputLedger``: what arrived, what was rejected and why (throttled warnings)
* :mod:`.diagnostics` -- why inputs do not synchronize; :mod:`.status` -- MapStatus fields, progress
* :mod:`.outputs` -- a render as the output images; :mod:`.markers` -- the mesh as RViz markers
* :mod:`.map_ops` -- mesh export, map save / load, long-work bookkeeping and cancel
* :mod:`.engine_setup` -- which engine settings the node takes and the Mapper built from them

Importing this package imports nothing; import the modules you need."""
