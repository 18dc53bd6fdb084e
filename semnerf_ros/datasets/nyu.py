"""The NYUv2 class sets the seed's ScanNet and ``replica_nyu_cnn`` datasets use (index = class id,
0 = void)."""
from __future__ import annotations

NYU40_CLASSES = [
    "void", "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refridgerator",
    "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
]
NYU13_CLASSES = [
    "void", "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "painting/picture", "sofa", "table", "TV", "wall", "window",
]
#: NYU40 ids the seed's replica_nyu_cnn "nyu34" set leaves out (absent from Replica's conversion)
NYU34_DROPPED = (10, 17, 19, 28, 30, 31)   # bookshelf, dresser, mirror, shower curtain, whiteboard, person
#: the seed's nyu34 set: NYU40 without :data:`NYU34_DROPPED`, renumbered 1..34 in order (the seed's
#: own name list calls id 17, NYU40's "floor mat", "floor" a second time)
NYU34_CLASSES = [name for i, name in enumerate(NYU40_CLASSES) if i not in NYU34_DROPPED]
