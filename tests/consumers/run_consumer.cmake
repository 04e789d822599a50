# cmake -P run_consumer.cmake: configure, build and run the consumer app.
#   MODE=add_subdirectory  BATCHQ_SOURCE_DIR=<batchq checkout>
#   MODE=find_package      BATCHQ_BUILD_DIR=<configured+built batchq tree>
cmake_minimum_required(VERSION 3.16)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(cfg -S "${APP_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}" -DCONSUME=${MODE})
if(MODE STREQUAL "add_subdirectory")
  list(APPEND cfg -DBATCHQ_SOURCE_DIR=${BATCHQ_SOURCE_DIR})
elseif(MODE STREQUAL "find_package")
  # Install the already-built tree into a scratch prefix, as a user would.
  run(${CMAKE_COMMAND} --install "${BATCHQ_BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
  list(APPEND cfg -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  message(FATAL_ERROR "MODE must be add_subdirectory or find_package")
endif()

run(${CMAKE_COMMAND} ${cfg})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build" --parallel 2)
run("${WORK_DIR}/build/consumer_app")
if(MODE STREQUAL "find_package" AND EXISTS "${WORK_DIR}/build/consumer_c")
  run("${WORK_DIR}/build/consumer_c")
endif()
