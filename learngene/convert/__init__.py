"""Converters from other code's checkpoints to learngene files (official SWS and TLEG Aux-Nets)."""
from learngene.convert.official import (CONVERTERS, STEM_KEY_TABLE, convert_checkpoint, convert_sws_official,
                                        convert_tleg_official, load_official_checkpoint, sws_key_table,
                                        tleg_key_table)

__all__ = ["CONVERTERS", "STEM_KEY_TABLE", "convert_checkpoint", "convert_sws_official", "convert_tleg_official",
           "load_official_checkpoint", "sws_key_table", "tleg_key_table"]
