# Install and export rules: find_package(batchq) and pkg-config batchq.
include(CMakePackageConfigHelpers)

set(BATCHQ_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/batchq")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/batchq"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h")

# Only the public targets: batchq's internal ones (batchq_rapidjson) are
# linked as $<BUILD_INTERFACE:...> and never appear in batchqTargets.cmake.
set(_bq_targets batchq_batch_queue)
if(TARGET batchq)
  list(APPEND _bq_targets batchq)
endif()
install(TARGETS ${_bq_targets}
        EXPORT batchqTargets
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
if(TARGET batchq_capi)
  install(TARGETS batchq_capi
          EXPORT batchqTargets
          LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
          ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
          RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
          PUBLIC_HEADER DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
endif()

install(EXPORT batchqTargets
        NAMESPACE batchq::
        DESTINATION "${BATCHQ_CMAKE_DIR}")

set(BATCHQ_HAVE_LIB OFF)
if(TARGET batchq)
  set(BATCHQ_HAVE_LIB ON)
endif()
configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/batchqConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/batchqConfig.cmake"
  INSTALL_DESTINATION "${BATCHQ_CMAKE_DIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/batchqConfigVersion.cmake"
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES "${PROJECT_BINARY_DIR}/batchqConfig.cmake"
              "${PROJECT_BINARY_DIR}/batchqConfigVersion.cmake"
        DESTINATION "${BATCHQ_CMAKE_DIR}")

configure_file("${PROJECT_SOURCE_DIR}/cmake/batchq.pc.in" "${PROJECT_BINARY_DIR}/batchq.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/batchq.pc" DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
