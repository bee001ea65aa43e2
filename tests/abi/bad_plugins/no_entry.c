/* A shared library without vdkit_plugin_entry: must be refused. */
__attribute__((visibility("default"))) int not_a_vdkit_plugin(void) {
    return 42;
}
