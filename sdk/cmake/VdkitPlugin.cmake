# vdkit_add_plugin(<target> SOURCES <files...> [OUTPUT_DIRECTORY <dir>] [INSTALL_DESTINATION <dir>])
#
# Builds a vdkit plugin: a MODULE library that links only the SDK headers
# (never the core), hides every symbol but vdkit_plugin_entry, and refuses
# undefined symbols so a plugin cannot depend on the host by accident.
# Used by vdkit's own plugins and by third parties through find_package(vdkit).
set(VDKIT_PLUGIN_MAP "${CMAKE_CURRENT_LIST_DIR}/vdkit_plugin.map" CACHE INTERNAL "")

function(vdkit_add_plugin target)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY;INSTALL_DESTINATION" "SOURCES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "vdkit_add_plugin(${target}): SOURCES is required")
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  if(TARGET vdkit::sdk)
    target_link_libraries(${target} PRIVATE vdkit::sdk)
  endif()
  target_compile_features(${target} PRIVATE cxx_std_20)
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_options(${target} PRIVATE "LINKER:--version-script=${VDKIT_PLUGIN_MAP}")
  # Sanitizer runtimes under clang live in the executable, so a fuzz build
  # (VDKIT_FUZZ) cannot refuse undefined symbols in plugins.
  if(NOT VDKIT_FUZZ)
    target_link_options(${target} PRIVATE "LINKER:--no-undefined")
  endif()
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  endif()
  if(ARG_INSTALL_DESTINATION)
    install(TARGETS ${target} LIBRARY DESTINATION ${ARG_INSTALL_DESTINATION})
  endif()
endfunction()
