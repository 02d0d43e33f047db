"""The method's core, after lucent's optvis: what is maximized (``units``, ``objectives``), how the image is made
(``param``, ``codes``), what keeps it robust and natural (``transforms``, ``regularizers``) and how layers are read
(``hooks``). Leaves of the package: they import nothing of dgnam but ``dgnam.infra``."""
