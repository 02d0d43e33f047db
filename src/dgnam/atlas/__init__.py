"""The atlas: a browsable microscope of a net, built offline as a static site.

Per layer a grid of its units; per unit its DGN-AM images from several seeds, the best pixel-space
baseline, the top exemplar accentuated (Hamblin et al. 2024), top and bottom dataset exemplars
(receptive-field crops for hidden units), the activation histogram over the data and links to
neighbouring units; a search box filters units and class names. ``dgnam atlas NET --layers ...
--out site`` builds it (incrementally: re-running adds only missing units); ``dgnam atlas serve site``
serves it on localhost; ``site/index.html`` also opens straight from disk.

The compute (:mod:`.compute`), the cache on disk (:mod:`.store`), the pages (:mod:`.site`) and the
build that ties them (:mod:`.build`) are kept apart.

Example:
    >>> from dgnam.atlas import AtlasConfig, AtlasMethod, build_atlas, open_data
    >>> build_atlas(net, "efficientnet_lite0", "site", open_data("photos"), AtlasMethod(gen, dgnam_config(gen), PixelConfig("deepinversion"), "lite0_blocks7_conv_resize"),
    ...             layers=["logits"], units=["logits:0-7"], config=AtlasConfig(seeds=(0, 1)))
"""

from .build import AtlasMethod, AtlasSummary, build_atlas, default_pool_dir, ensure_pool, open_data, plan_units, split_unit_list
from .compute import AtlasConfig
from .site import serve, write_site

__all__ = ["AtlasConfig", "AtlasMethod", "AtlasSummary", "build_atlas", "default_pool_dir", "ensure_pool", "open_data",
           "plan_units", "serve", "split_unit_list", "write_site"]
