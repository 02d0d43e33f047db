"""An offline pool of natural images for training the image-generator prior (``dgnam pool build``).

:mod:`.debian` fetches Debian packages and reads their licences; :mod:`.sources`, :mod:`.gcompris_tuxpaint_palapeli` and
:mod:`.photo_folders` read their photographs and scikit-image's, :mod:`.duplicates` drops repeated photographs, :mod:`.crops` turns
originals into square crops and composites, :mod:`.build` assembles and splits a pool, :mod:`.store`
saves, loads and packs it (and reads any image folder). The names below are the package's public face.
"""

from .build import build_pool, collect_sources, summarize
from .crops import alpha_composite, composite_batch, crops_per_original, image_detail, is_informative_frame, place_stamp, random_crops, resize_rgba, sample_crop_box, stable_hash, stamp_statistics, tight_alpha_box, trim_dark_borders, video_crops
from .debian import DebPackage, default_cache_dir, fetch_deb, licence_for, parse_dep5
from .sources import DEFAULT_HELDOUT_FRACTION, IMAGE_EXTENSIONS, OPENCV_DATA_DIR, OPENCV_PHOTOS, OPENCV_VIDEOS, Original, SKIMAGE_PHOTOS, Source, SourceSummary, TUXPAINT_DENY, TUXPAINT_STAMPS_DIR, WALLPAPERS, WallpaperSpec, is_photographic_stamp, largest_image, opencv_photo_source, opencv_video_source, skimage_source, tuxpaint_stamp_source, video_decoder, wallpaper_source
from .store import ImageFolderPool, PACK_QUALITIES, PoolCard, choose_heldout, heldout_sample, load_any, load_image_folder, load_packed, load_pool, pack_format, pack_images, pack_pool, save_folder_pool, save_pool, split_indices

__all__ = ['DEFAULT_HELDOUT_FRACTION', 'DebPackage', 'IMAGE_EXTENSIONS', 'ImageFolderPool', 'OPENCV_DATA_DIR', 'OPENCV_PHOTOS', 'OPENCV_VIDEOS', 'Original', 'PACK_QUALITIES', 'PoolCard', 'SKIMAGE_PHOTOS', 'Source', 'SourceSummary', 'TUXPAINT_DENY', 'TUXPAINT_STAMPS_DIR', 'WALLPAPERS', 'WallpaperSpec', 'alpha_composite', 'build_pool', 'choose_heldout', 'collect_sources', 'composite_batch', 'crops_per_original', 'default_cache_dir', 'fetch_deb', 'heldout_sample', 'image_detail', 'is_informative_frame', 'is_photographic_stamp', 'largest_image', 'licence_for', 'load_any', 'load_image_folder', 'load_packed', 'load_pool', 'opencv_photo_source', 'opencv_video_source', 'pack_format', 'pack_images', 'pack_pool', 'parse_dep5', 'place_stamp', 'random_crops', 'resize_rgba', 'sample_crop_box', 'save_folder_pool', 'save_pool', 'skimage_source', 'split_indices', 'stable_hash', 'stamp_statistics', 'summarize', 'tight_alpha_box', 'trim_dark_borders', 'tuxpaint_stamp_source', 'video_crops', 'video_decoder', 'wallpaper_source']
