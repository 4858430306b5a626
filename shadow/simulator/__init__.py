"""The aggregator simulator and the deliberately faulty wallet used for sample traffic.

``rgs-shadow simulate`` plays an aggregator against any wallet URL; the faulty
wallet (:mod:`.faulty_wallet`) is the real wallet core with three classic bugs
switched on, so the whole chain can be shown finding them.
"""
