"""numpy <-> sensor_msgs conversions (no cv_bridge): every encoding round trip,
padded rows, big-endian data, unsupported encodings, camera info, poses, stamps."""
import array

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from semnerf_ros.bridge import convert  # noqa: E402
from semnerf_ros.bridge.convert import UnsupportedEncodingError  # noqa: E402
from semnerf_ros.engine.geometry import Intrinsics, IntrinsicsError, PoseError, optical_from_body_pose  # noqa: E402

RNG = np.random.default_rng(0)


def sample(encoding, h=5, w=7):
    kind, ch = convert.ENCODINGS[encoding]
    shape = (h, w, ch) if ch > 1 else (h, w)
    dt = np.dtype(kind)
    if dt.kind == "f":
        return RNG.normal(size=shape).astype(dt)
    info = np.iinfo(dt)
    return RNG.integers(max(info.min, -1000000), min(info.max, 1000000), size=shape,
                        endpoint=True).astype(dt)


@pytest.mark.parametrize("encoding", list(convert.ENCODINGS))
def test_round_trip_every_encoding(encoding):
    a = sample(encoding)
    msg = convert.numpy_to_image(a, encoding, convert.make_header(12.5, "cam"))
    assert isinstance(msg, Image)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 500000000
    b = convert.image_to_numpy(msg)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("encoding", list(convert.ENCODINGS))
def test_padded_step(encoding):
    a = sample(encoding, 4, 3)
    kind, ch = convert.ENCODINGS[encoding]
    row = a.reshape(4, -1).view(np.uint8).reshape(4, -1)
    pad = 13
    data = np.concatenate([row, np.full((4, pad), 0xAB, np.uint8)], axis=1).tobytes()
    msg = Image(height=4, width=3, encoding=encoding, is_bigendian=0, step=row.shape[1] + pad,
                data=data)
    np.testing.assert_array_equal(convert.image_to_numpy(msg), a)


def test_big_endian_mono16_and_float():
    a = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000 + 7
    msg = Image(height=3, width=4, encoding="mono16", is_bigendian=1, step=8,
                data=a.astype(">u2").tobytes())
    out = convert.image_to_numpy(msg)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, a)
    d = np.linspace(0.5, 3.0, 12, dtype=np.float32).reshape(3, 4)
    msg = Image(height=3, width=4, encoding="32FC1", is_bigendian=1, step=16, data=d.astype(">f4").tobytes())
    np.testing.assert_array_equal(convert.depth_from_image_msg(msg), d)


def test_unsupported_and_malformed():
    msg = Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8))
    with pytest.raises(UnsupportedEncodingError, match="yuv422"):
        convert.image_to_numpy(msg)
    with pytest.raises(UnsupportedEncodingError, match="32FC1"):
        convert.labels_from_image_msg(convert.numpy_to_image(np.zeros((2, 2), np.float32), "32FC1"))
    with pytest.raises(UnsupportedEncodingError, match="mono16"):
        convert.rgb_from_image_msg(convert.numpy_to_image(np.zeros((2, 2), np.uint16), "mono16"))
    with pytest.raises(UnsupportedEncodingError, match="rgb8"):
        convert.depth_from_image_msg(convert.numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))
    with pytest.raises(convert.ImageFormatError, match="step"):
        convert.image_to_numpy(Image(height=2, width=4, encoding="rgb8", step=6, data=bytes(24)))
    with pytest.raises(convert.ImageFormatError, match="bytes"):
        convert.image_to_numpy(Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(10)))
    with pytest.raises(convert.ImageFormatError):
        convert.numpy_to_image(np.zeros((2, 2)), "rgb8")
    with pytest.raises(convert.ImageFormatError, match="fit"):
        convert.numpy_to_image(np.array([[300]]), "mono8")


def test_rgb_from_colour_encodings():
    rgb = sample("rgb8")
    np.testing.assert_array_equal(convert.rgb_from_image_msg(convert.numpy_to_image(rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(
        convert.rgb_from_image_msg(convert.numpy_to_image(rgb[:, :, ::-1], "bgr8")), rgb)
    alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
    np.testing.assert_array_equal(
        convert.rgb_from_image_msg(convert.numpy_to_image(np.concatenate([rgb, alpha], 2), "rgba8")), rgb)
    np.testing.assert_array_equal(
        convert.rgb_from_image_msg(convert.numpy_to_image(np.concatenate([rgb[:, :, ::-1], alpha], 2),
                                                          "bgra8")), rgb)
    grey = sample("mono8")
    out = convert.rgb_from_image_msg(convert.numpy_to_image(grey, "mono8"))
    assert out.shape == grey.shape + (3,) and np.all(out == grey[:, :, None])


@pytest.mark.parametrize("encoding", ["mono8", "8UC1", "mono16", "16UC1", "32SC1"])
def test_labels_int32(encoding):
    lab = np.abs(sample(encoding)) % 200
    out = convert.labels_from_image_msg(convert.numpy_to_image(lab, encoding))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, lab)


def test_labels_to_image_mono16_above_256_classes():
    lab = np.array([[0, 299]], np.int32)
    m = convert.labels_to_image(lab, 300)
    assert m.encoding == "mono16"
    np.testing.assert_array_equal(convert.labels_from_image_msg(m), lab)
    assert convert.labels_to_image(lab % 256, 256).encoding == "mono8"


def test_depth_units_and_invalid():
    mm = np.array([[0, 1500], [65535, 250]], np.uint16)
    np.testing.assert_allclose(convert.depth_from_image_msg(convert.numpy_to_image(mm, "16UC1")),
                               [[0, 1.5], [65.535, 0.25]], rtol=1e-6)
    m = np.array([[np.nan, -1.0], [np.inf, 2.5]], np.float32)
    out = convert.depth_from_image_msg(convert.numpy_to_image(m, "32FC1"))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0], [0, 2.5]])


def test_reads_rosbags_style_numpy_data():
    a = sample("rgb8")
    fake = type("RosbagsImage", (), {})()
    fake.height, fake.width, fake.encoding, fake.is_bigendian = 5, 7, "rgb8", 0
    fake.step, fake.data = 21, a.reshape(-1).copy()
    np.testing.assert_array_equal(convert.image_to_numpy(fake), a)
    msg = Image(height=5, width=7, encoding="rgb8", step=21, data=array.array("B", a.tobytes()))
    np.testing.assert_array_equal(convert.image_to_numpy(msg), a)


def test_camera_info_round_trip_and_errors():
    intr = Intrinsics(500.0, 510.0, 319.5, 239.5, 640, 480)
    info = convert.camera_info_from_intrinsics(intr, convert.make_header(1.0, "cam"))
    assert isinstance(info, CameraInfo) and info.distortion_model == "plumb_bob"
    assert list(info.p) == [500.0, 0, 319.5, 0, 0, 510.0, 239.5, 0, 0, 0, 1, 0]
    assert convert.intrinsics_from_camera_info(info) == intr
    info.k = [0.0] * 9
    with pytest.raises(IntrinsicsError, match="focal"):
        convert.intrinsics_from_camera_info(info)
    info = convert.camera_info_from_intrinsics(intr)
    info.width = 0
    with pytest.raises(IntrinsicsError, match="size"):
        convert.intrinsics_from_camera_info(info)


def random_pose(rng):
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
    T[:3, 3] = rng.normal(size=3)
    return T


def test_pose_round_trips_and_conventions():
    from nav_msgs.msg import Odometry

    T = random_pose(RNG)
    ps = convert.pose_stamped_from_pose(T, "map", 3.25)
    assert ps.header.frame_id == "map" and convert.stamp_to_sec(ps.header.stamp) == 3.25
    np.testing.assert_allclose(convert.pose_from_pose_stamped(ps), T, atol=1e-9)
    np.testing.assert_allclose(convert.pose_from_pose_stamped(ps.pose), T, atol=1e-9)
    body = convert.pose_stamped_from_pose(T, convention="body")
    np.testing.assert_allclose(convert.pose_from_pose_stamped(body, "body"), T, atol=1e-9)
    # body convention: the body x axis (forward) is the optical z axis
    Tb = convert.pose_from_pose_stamped(body)   # read as-is: the body frame
    np.testing.assert_allclose(optical_from_body_pose(Tb), T, atol=1e-9)
    odom = Odometry()
    odom.pose.pose = ps.pose
    np.testing.assert_allclose(convert.pose_from_odometry(odom), T, atol=1e-9)
    ps.pose.orientation.w = float("nan")
    with pytest.raises(PoseError):
        convert.pose_from_pose_stamped(ps)
    ps.pose.orientation.x, ps.pose.orientation.y, ps.pose.orientation.z, ps.pose.orientation.w = 0, 0, 0, 2.0
    with pytest.raises(PoseError, match="quaternion"):
        convert.pose_from_pose_stamped(ps)
    with pytest.raises(ValueError, match="convention"):
        convert.pose_from_pose_stamped(body, "enu")


def test_stamps():
    s = convert.sec_to_stamp(1699999999.123456789)
    assert s.sec == 1699999999 and abs(s.nanosec - 123456789) <= 256
    assert convert.stamp_to_sec(convert.sec_to_stamp(2.5)) == 2.5
    assert convert.sec_to_stamp(0.9999999999).sec == 1   # rounds to the nanosecond, carries
    with pytest.raises(ValueError):
        convert.sec_to_stamp(-1.0)
    with pytest.raises(TypeError):
        convert.stamp_to_sec("now")
