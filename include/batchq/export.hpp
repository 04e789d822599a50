// batchq/export.hpp - symbol visibility for the compiled C++ library.
// batchq builds with hidden visibility; BATCHQ_CXX_API marks what a shared
// build of batchq::batchq exports. Static builds (the default) need nothing.
#ifndef BATCHQ_EXPORT_HPP
#define BATCHQ_EXPORT_HPP

#if defined(_WIN32)
#define BATCHQ_CXX_API
#elif defined(__GNUC__)
#define BATCHQ_CXX_API __attribute__((visibility("default")))
#else
#define BATCHQ_CXX_API
#endif

#endif  // BATCHQ_EXPORT_HPP
